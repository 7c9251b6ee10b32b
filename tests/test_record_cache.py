"""pipelines/passes/record_cache.py without Beam: pass 1 of one unit into the cache
(`read_into_cache`) and a later pass over one cache file (`over_file`), on small batches
in a tmp folder."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import valid_batches

from pipelines.passes import record_cache
from transforms import records, sources
from transforms.stats import HoldoutRule

RULE = HoldoutRule(seed=3, val_fraction=0.2)


def raw_batch(first: int, labels: list, vectors: list) -> dict:
    """A raw vector batch as the readers give it (transforms/sources.py)."""
    lengths = np.array([-1 if v is None else len(v) for v in vectors], np.int64)
    values = np.array([x for v in vectors if v is not None for x in v], np.float32)
    return {"source": "mem://unit", "row": np.arange(first, first + len(labels), dtype=np.int64), "id": None,
            "label": np.array(labels, dtype=object), "values": values, "lengths": lengths, "errors": None}


class Checked:
    """A unit's (records, valid, rejected) batches as reading.CheckedVectors gives them, from
    raw batches in memory; raises UnreadableFile(`fail`) after them when `fail` is set."""

    def __init__(self, raws: list[dict], fail: str | None = None, reject: bool = False):
        self.raws, self.fail = raws, fail
        self.spec = SimpleNamespace(reject_unreadable_files=reject)

    def __call__(self, unit, dim):
        for raw in self.raws:
            yield (len(raw["row"]), *records.validate(raw, dim))
        if self.fail:
            raise sources.UnreadableFile(self.fail)


RAWS = [
    raw_batch(0, ["a", "a", "b", None], [[1, 2], [3, 4], [5, 6], [7, 8]]),  # row 3: no label
    raw_batch(4, ["b", "a", "b"], [[9, 10], [11, float("nan")], [13, 14, 15]]),  # rows 5, 6: bad vectors
]


def tagged(result, tag):
    return [o.value for o in result.outputs if o.tag == tag]


def test_read_into_cache_writes_valid_and_rejected_files_and_summaries(tmp_path):
    result = record_cache.read_into_cache(("mem://unit", -1, 0), Checked(RAWS), str(tmp_path), RULE, False, 2)
    assert (result.read, result.rejected, result.counters) == (7, 3, {})
    cache = dict(tagged(result, "cache"))
    assert sorted(cache) == ["good", "rejected"]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in cache.values())

    (good,) = record_cache.good_batches(cache["good"])
    assert list(good["label"]) == ["a", "a", "b", "b"]
    assert good["features"].tolist() == [[1, 2], [3, 4], [5, 6], [9, 10]]
    assert good["features"].dtype == np.float32 and good["key"].dtype == np.uint64
    assert list(good["id"]) == list(records.validate(RAWS[0], 2)[0]["id"]) + [records.validate(RAWS[1], 2)[0]["id"][0]]

    bad = records.concat(list(record_cache.rejected_batches(cache["rejected"])))
    assert bad["row"].tolist() == [3, 5, 6]
    assert list(bad["reason"]) == ["label is missing", "features contain NaN, inf or a missing value",
                                   "feature vector has 3 values, expected 2"]

    (every,) = tagged(result, "partials")  # one dict for all the unit's classes
    partials = {label: s.extract() for label, s in every.items()}
    assert {k: (s.count, s.nbytes) for k, s in partials.items()} == {"a": (2, 16), "b": (2, 16)}
    ids = np.concatenate([h for _, h in tagged(result, "ids")])
    assert len(ids) == 4 and len(set(ids.tolist())) == 4


def test_read_into_cache_keeps_what_an_unreadable_unit_held_when_rejecting(tmp_path):
    checked = Checked(RAWS[:1], fail="cannot read mem://unit: damaged", reject=True)
    result = record_cache.read_into_cache(("mem://unit", -1, 0), checked, str(tmp_path), RULE, False, 2)
    assert (result.read, result.rejected) == (5, 2)  # 4 rows, then the file's one entry
    cache = dict(tagged(result, "cache"))
    (good,) = record_cache.good_batches(cache["good"])
    assert list(good["label"]) == ["a", "a", "b"]
    bad = records.concat(list(record_cache.rejected_batches(cache["rejected"])))
    assert bad["row"].tolist() == [3, -1]
    assert bad["reason"][1] == "unreadable file: cannot read mem://unit: damaged"
    assert bad["source"][1] == "mem://unit"


def test_read_into_cache_fails_on_an_unreadable_unit_naming_it(tmp_path):
    checked = Checked(RAWS[:1], fail="cannot read mem://unit: damaged")
    with pytest.raises(sources.UnreadableFile, match="cannot read mem://unit: damaged. Fix or remove the file"):
        record_cache.read_into_cache(("mem://unit", -1, 0), checked, str(tmp_path), RULE, False, 2)


def cache_file(folder, parts):
    """One cache file of valid records, written in `parts` batches; returns (path, the batches)."""
    batches = valid_batches({"a": 30, "b": 7}, parts=parts)
    writer = record_cache.CacheWriter(str(folder), unit="u")
    for b in batches:
        writer.add("good", b)
    ((kind, path),) = writer.flush()
    assert kind == "good"
    return path, batches


def test_over_file_gives_the_work_one_batch_of_the_file_and_counts_every_row(tmp_path):
    path, batches = cache_file(tmp_path, parts=3)
    seen = []

    def work(todo, factor, unit):
        first = next(todo)  # and stops early: over_file still reads the file to its end
        seen.append((unit, first))
        return [len(first["key"]) * factor], {"records_seen": len(first["key"])}

    result = record_cache.over_file(("good", path), record_cache.ANALYSIS_COLUMNS, work, 10)
    (unit, batch), = seen
    assert unit == os.path.basename(path)
    assert sorted(batch) == ["features", "key", "label"]  # only the columns asked for
    assert batch["key"].tolist() == records.concat(batches)["key"].tolist()  # the batches, in order, as one
    assert (result.read, result.rejected, result.outputs, result.counters) == (37, 0, [370], {"records_seen": 37})


def test_over_file_passes_rejected_records_on(tmp_path):
    bad = records.validate(RAWS[1], 2)[1]
    writer = record_cache.CacheWriter(str(tmp_path), unit="u")
    writer.add("rejected", bad)
    writer.add("rejected", records.validate(RAWS[0], 2)[1])
    ((kind, path),) = writer.flush()

    def work(*_args, **_kwargs):
        raise AssertionError("the work never sees rejected records")

    result = record_cache.over_file((kind, path), None, work)
    assert (result.read, result.rejected, result.counters) == (3, 3, {})
    assert [o.tag for o in result.outputs] == ["rejected", "rejected"]
    assert [o.value["row"].tolist() for o in result.outputs] == [[5, 6], [3]]
