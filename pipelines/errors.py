"""The errors the jobs report to their user as one line (exit status 2), not as a traceback."""

from __future__ import annotations


class JobError(ValueError):
    """An error in the user's flags or data, found while the job runs.

    Beam logs an exception raised in a stage with its traceback and re-wraps it with the
    step's name, unless it is already tagged with its step; this one is, so it reaches
    the command line as it was raised.
    """

    _tagged_with_step = True
