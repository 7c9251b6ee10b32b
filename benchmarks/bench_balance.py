"""Wall time and peak memory of pipelines.balance against the one-process reference.

    python -m benchmarks.bench_balance --rows 1000000 [--rows 5000000 ...] \\
        --dim 64 --classes 10 --ratio 100 [--target majority] [--multi_processing] [--multi_threading]
        [--tfrecord] [--both]

For each --rows: generates the corpus (benchmarks.make_corpus; cached in
benchmarks/data/, reused when complete), then runs as subprocesses

  job        python -m pipelines.balance --input CORPUS --output benchmarks/runs/... \\
                 --output_format parquet --runner=FnApiRunner
  job (mp)   the same + --direct_running_mode=multi_processing --direct_num_workers=N
             (with --multi_processing)
  job (mt)   the same + --direct_running_mode=multi_threading --direct_num_workers=N
             (with --multi_threading)
  job (tfr)  the same as `job` with --output_format tfrecord (with --tfrecord)
  job (both) the same as `job` with --output_format both (with --both)
  reference  python -m benchmarks.reference --input CORPUS --output benchmarks/runs/...

and checks that each job run wrote the reference's counts (targets and per-cluster
quotas of every class, held-out rows). Peak memory is the largest sum of VmRSS over
the subprocess and all its descendants, sampled every 0.1 s (pages shared between
processes are counted in each); `max proc` is the largest single process's peak
(wait4's ru_maxrss); CPU is user + system of the whole tree. For in-process runs the
merge + write stage (MergeShards: read fragments, sort, encode, write) is timed from
the job's log. With --tfrecord it also runs benchmarks.bench_tfrecord on 1M rows,
which times the TFRecord writer alone. Prints markdown tables; appends every
measurement to benchmarks/runs/results.jsonl; job logs are kept as benchmarks/runs/*.log.

--project DIR runs the job's code from DIR (cwd and PYTHONPATH) instead of this
checkout, e.g. a patched copy; the corpus and outputs stay under benchmarks/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

from benchmarks import make_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "benchmarks", "data")
RUNS = os.path.join(ROOT, "benchmarks", "runs")
SAMPLE_S = 0.1


# ---------------------------------------------------------------- measuring


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc/*/stat."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(name))
    return tree


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(root: int) -> int:
    """Sum of VmRSS (KiB) over `root` and its descendants."""
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        total += _rss_kib(pid)
        todo.extend(tree.get(pid, []))
    return total


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], log_path: str, cwd: str, env: dict | None = None) -> dict:
    """Runs `cmd`; returns wall and CPU seconds, peak tree RSS, max single-process RSS (MiB)."""
    peak = [0]
    with open(log_path, "w") as log:
        start, busy = time.perf_counter(), busy_cpu_s()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(SAMPLE_S):
                peak[0] = max(peak[0], tree_rss_kib(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        others = busy_cpu_s() - busy - usage.ru_utime - usage.ru_stime
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    print(
        f"  rc {proc.returncode}, {wall:.1f}s wall, {usage.ru_utime + usage.ru_stime:.0f}s CPU, "
        f"peak {max(peak[0], usage.ru_maxrss) / 1024:.0f} MiB; other processes: {others:.0f}s CPU",
        flush=True,
    )
    if others > 0.1 * wall:
        print(
            "  warning: other processes used the CPUs meanwhile; timings may be skewed", flush=True
        )
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_mib": round(max(peak[0], usage.ru_maxrss) / 1024),
        "max_proc_mib": round(usage.ru_maxrss / 1024),
        "rc": proc.returncode,
        "log": log_path,
        "other_cpu_s": round(max(others, 0.0), 1),  # CPU used by other processes meanwhile
    }


WROTE = re.compile(r"^(\d\d):(\d\d):(\d\d) INFO wrote .*\((\d+) records\)")


def write_stage(log_path: str) -> dict | None:
    """The merge + write stage, timed from the job's log (in-process runs only).

    MergeShards logs `HH:MM:SS INFO wrote <shard> (<n> records)` after each shard; the
    rows of all shards but the first over the seconds from the first such line to the
    last give the stage's rows/s (read fragments, sort, encode, write; 1 s resolution).
    """
    times, rows = [], []
    with open(log_path, errors="replace") as f:
        for line in f:
            m = WROTE.match(line)
            if m:
                h, mi, sec, n = map(int, m.groups())
                times.append(h * 3600 + mi * 60 + sec)
                rows.append(n)
    seconds = (times[-1] - times[0]) % 86400 if len(times) >= 3 else 0
    if seconds < 2:
        return None
    return {
        "shards": len(times),
        "rows": sum(rows[1:]),
        "seconds": seconds,
        "rows_per_s": round(sum(rows[1:]) / seconds),
    }


def tail(path: str, lines: int = 15) -> str:
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


# ---------------------------------------------------------------- runs


def corpus(rows: int, a) -> str:
    name = f"n{rows}_d{a.dim}_c{a.classes}_r{a.ratio:g}_s{a.seed}"
    path = os.path.join(DATA, name)
    if make_corpus.is_complete(path, rows, a.dim, a.classes, a.ratio, a.seed):
        print(f"corpus {path}: cached")
    else:
        start = time.perf_counter()
        make_corpus.generate(rows, a.dim, a.classes, a.ratio, a.seed, path)
        print(f"corpus {path}: generated in {time.perf_counter() - start:.1f}s")
    return path


def measured_run(name: str, rows: int, out: str, cmd: list[str], written: str, key: str,
                 cwd: str, env: dict | None = None) -> dict:
    """Runs `cmd` into a fresh `out` under measure(); on success result[key] is OUT/`written`."""
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(RUNS, exist_ok=True)
    print(f"{name}: {' '.join(cmd)}", flush=True)
    result = measure(cmd, out + ".log", cwd=cwd, env=env)
    result.update(name=name, rows=rows, output=out, cmd=cmd)
    path = os.path.join(out, written)
    if result["rc"] == 0 and os.path.exists(path):
        with open(path) as f:
            result[key] = json.load(f)
    else:
        print(f"  FAILED (rc {result['rc']}), last lines of {result['log']}:\n{tail(result['log'])}")
    return result


def run_job(
    name: str, slug: str, data: str, rows: int, a, extra: list[str], fmt: str = "parquet"
) -> dict:
    out = os.path.join(RUNS, f"{slug}-{rows}")
    cmd = [sys.executable, "-m", "pipelines.balance", "--input", data, "--output", out,
           "--output_format", fmt, "--runner=FnApiRunner", *(["--target", a.target] if a.target else []), *extra]
    env = dict(os.environ)
    project = os.path.abspath(a.project)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [project, env.get("PYTHONPATH")]))
    return measured_run(name, rows, out, cmd, "manifest.json", "manifest", project, env)


def run_reference(data: str, rows: int, target: str | None = None) -> dict:
    out = os.path.join(RUNS, f"reference-{rows}")
    cmd = [sys.executable, "-m", "benchmarks.reference", "--input", data, "--output", out,
           *(["--target", target] if target else [])]
    return measured_run("reference", rows, out, cmd, "summary.json", "summary", ROOT)


def same_counts(manifest: dict, summary: dict) -> str:
    """'yes', or what differs between the job's manifest and the reference's summary."""
    if manifest["val"]["records"] != summary["val"]:
        return f"val {manifest['val']['records']} vs {summary['val']}"
    ref = {c["label"]: c for c in summary["classes"]}
    for c in manifest["classes"]:
        r = ref.get(c["label"])
        if r is None or c["target"] != r["target"] or c["output"] != r["output"]:
            return f"class {c['label']}: target/output differ"
        job = [(k["input"], k["quota"]) for k in c["clusters"]]
        want = [(k["input"], k["quota"]) for k in r["clusters"]]
        if job != want[: len(job)] or any(n for n, _ in want[len(job) :]):
            return f"class {c['label']}: cluster sizes or quotas differ"
    return "yes" if len(ref) == len(manifest["classes"]) else "classes differ"


def cleanup(result: dict, keep: bool) -> None:
    if not keep:
        shutil.rmtree(result["output"], ignore_errors=True)


def record(result: dict) -> None:
    keep = {k: v for k, v in result.items() if k not in ("manifest", "summary")}
    keep["written"] = (result.get("manifest") or {}).get("totals", {}).get("output")
    keep["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(os.path.join(RUNS, "results.jsonl"), "a") as f:
        f.write(json.dumps(keep) + "\n")


def fmt_row(job: dict, ref: dict) -> str:
    rows = job["rows"]
    if job["rc"] != 0:
        return "| " + " | ".join([job["name"], f"{rows:,}", "FAILED"] + [""] * 10) + " |"
    ok = same_counts(job["manifest"], ref["summary"]) if ref.get("summary") else "n/a"
    cells = [
        job["name"],
        f"{rows:,}",
        f"{job['manifest']['totals']['output']:,}",
        f"{job['wall_s']:.1f}",
        f"{job['cpu_s']:.0f}",
        f"{rows / job['wall_s']:,.0f}",
        f"{job['peak_mib']:,} ({job['max_proc_mib']:,})",
    ]
    if ref.get("rc") == 0:
        cells += [f"{ref['wall_s']:.1f}", f"{ref['cpu_s']:.0f}", f"{rows / ref['wall_s']:,.0f}"]
        cells += [f"{ref['peak_mib']:,}", f"{job['wall_s'] / ref['wall_s']:.1f}x"]
    else:
        cells += ["FAILED" if ref.get("rc") else "", "", "", "", ""]
    return "| " + " | ".join(cells + [ok]) + " |"


HEADER = (
    "| run | rows | rows written | job wall s | job CPU s | job rows/s | job peak MiB (max proc) | "
    "ref wall s | ref CPU s | ref rows/s | ref peak MiB | job/ref wall | same counts |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_balance",
        description="pipelines.balance vs a one-process reference.",
    )
    ap.add_argument(
        "--rows", type=int, action="append", help="corpus rows (repeatable; default 1000000)"
    )
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--ratio", type=float, default=100.0)
    ap.add_argument(
        "--seed", type=int, default=0, help="corpus seed (the job runs with its default seed)"
    )
    ap.add_argument(
        "--multi_processing",
        action="store_true",
        help="also run the job with --direct_running_mode=multi_processing",
    )
    ap.add_argument(
        "--workers", type=int, default=2, help="--direct_num_workers for --multi_processing"
    )
    ap.add_argument(
        "--tfrecord",
        action="store_true",
        help="also run the job with --output_format tfrecord, and benchmarks.bench_tfrecord",
    )
    ap.add_argument("--both", action="store_true", help="also run the job with --output_format both")
    ap.add_argument(
        "--multi_threading",
        action="store_true",
        help="also run the job with --direct_running_mode=multi_threading --direct_num_workers=--workers",
    )
    ap.add_argument("--target", default=None, help="the job's and the reference's --target (default: max)")
    ap.add_argument(
        "--no_default", action="store_true", help="skip the default (parquet, in-process) job run"
    )
    ap.add_argument("--no_reference", action="store_true", help="skip the reference run")
    ap.add_argument(
        "--project", default=ROOT, help="where the job's code is run from (default: this checkout)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the outputs under benchmarks/runs/")
    a = ap.parse_args()
    lines, done = [], []
    for rows in a.rows or [1_000_000]:
        data = corpus(rows, a)
        jobs = []
        if not a.no_default:
            jobs.append(run_job("job", "job", data, rows, a, []))
        if a.multi_processing:
            mp = ["--direct_running_mode=multi_processing", f"--direct_num_workers={a.workers}"]
            jobs.append(
                run_job(
                    f"job multi_processing x{a.workers}", f"job-mp{a.workers}", data, rows, a, mp
                )
            )
        if a.multi_threading:
            mt = ["--direct_running_mode=multi_threading", f"--direct_num_workers={a.workers}"]
            jobs.append(run_job(f"job multi_threading x{a.workers}", f"job-mt{a.workers}", data, rows, a, mt))
        if a.tfrecord:
            jobs.append(run_job("job tfrecord", "job-tfrecord", data, rows, a, [], fmt="tfrecord"))
        if a.both:
            jobs.append(run_job("job both", "job-both", data, rows, a, [], fmt="both"))
        for j in jobs:
            cleanup(j, a.keep)
        ref = {"rc": None} if a.no_reference else run_reference(data, rows, a.target)
        if not a.no_reference:
            cleanup(ref, a.keep)
            record(ref)
        for j in jobs:
            j["write_stage"] = write_stage(j["log"])
            done.append(j)
            record(j)
            lines.append(fmt_row(j, ref))
            print(lines[-1], flush=True)
    print("\n" + HEADER + "\n" + "\n".join(lines))
    stages = [(j, j["write_stage"]) for j in done if j.get("write_stage")]
    if stages:
        print("\nMerge + write stage, from the job logs' `wrote` lines (all shards but the first):")
        print("| run | corpus rows | shards timed | rows timed | s | rows/s |")
        print("|---|---:|---:|---:|---:|---:|")
        for j, w in stages:
            print(
                f"| {j['name']} | {j['rows']:,} | {w['shards'] - 1} | {w['rows']:,} | "
                f"{w['seconds']} | {w['rows_per_s']:,} |"
            )
    if a.tfrecord:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.bench_tfrecord",
            "--rows",
            "1000000",
            "--dim",
            str(a.dim),
        ]
        print("\n" + " ".join(cmd), flush=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(a.project), ROOT])
        subprocess.run(cmd, cwd=os.path.abspath(a.project), env=env, check=False)


if __name__ == "__main__":
    main()
