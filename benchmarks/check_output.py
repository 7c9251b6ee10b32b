"""Every count of a balance job's manifest against its Parquet files, read independently of the job.

    python -m benchmarks.check_output OUT

Reads every train shard the manifest names (rows per class and per cluster, label texts), checks that
train/ holds no other file, counts val/, and checks that the totals reconcile (read = rejected + held
out + train input). Prints one line, or fails on the first count that differs.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import sys

import pyarrow.parquet as pq


def check(out: str) -> str:
    with open(os.path.join(out, "manifest.json")) as f:
        m = json.load(f)
    per_class, per_cluster, files = collections.Counter(), collections.Counter(), 0
    for c in m["classes"]:
        for shard in c["shards"]["parquet"]:
            t = pq.read_table(os.path.join(out, shard["path"]), columns=["label_text", "cluster"])
            files += 1
            assert t.num_rows == shard["records"], shard
            assert set(t.column("label_text").to_pylist()) <= {c["label"]}
            per_class[c["label"]] += t.num_rows
            per_cluster.update((c["label"], k) for k in t.column("cluster").to_pylist())
    on_disk = sorted(glob.glob(os.path.join(out, "parquet", "train", "*", "*.parquet")))
    assert len(on_disk) == files, (len(on_disk), files)
    for c in m["classes"]:
        assert per_class[c["label"]] == c["output"] == c["target"], c["label"]
        for k in c["clusters"]:
            assert per_cluster[c["label"], k["id"]] == k["output"] == k["quota"], (c["label"], k)
    val = sum(pq.read_metadata(f).num_rows for f in glob.glob(os.path.join(out, "parquet", "val", "*.parquet")))
    assert val == m["val"]["records"] == sum(c["val"] for c in m["classes"])
    t = m["totals"]
    assert t["read"] == t["rejected"] + t["holdout"] + t["train_input"] and t["output"] == sum(per_class.values())
    return (f"ok: {len(m['classes'])} classes, {files} train files, {sum(per_class.values())} train rows, {val} val rows; "
          f"read {t['read']} = rejected {t['rejected']} + held out {t['holdout']} + train input {t['train_input']}")


if __name__ == "__main__":
    print(check(sys.argv[1]))
