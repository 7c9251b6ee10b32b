"""Running a job: flags, the driver (checks, run, summary, Ctrl-C), Beam's memoised introspection."""
