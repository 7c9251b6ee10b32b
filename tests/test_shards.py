"""Fragment writing: nothing lost when buffers flush mid-bundle."""

import os

import numpy as np
import pyarrow as pa

from pipelines.outputs.formats import output_table
from pipelines.outputs.fragments import FragmentWriter, read_fragments


def columns(n, dim=4, start=0):
    return {
        "id": np.array([f"r{i}" for i in range(start, start + n)], dtype=object),
        "order": np.arange(start, start + n, dtype=np.uint64)[::-1].copy(),
        "label": np.zeros(n, np.int32),
        "cluster": np.arange(n, dtype=np.int32) % 3,
        "features": np.arange(n * dim, dtype=np.float32).reshape(n, dim),
    }


def test_every_row_reaches_a_reported_fragment(tmp_path):
    w = FragmentWriter(str(tmp_path), flush_bytes=2000)  # flushes many times
    reported = []
    for b in range(20):
        shard = np.arange(50) % 3
        w.add_split("train", 0, shard, columns(50, start=50 * b))
        reported += w.drain()
    reported += w.flush()
    assert len(reported) > 20
    assert sum(n for _, _, n in reported) == 1000
    by_dest = {}
    for dest, path, _ in reported:
        by_dest.setdefault(dest, []).append(path)
    assert set(by_dest) == {("train", 0, 0), ("train", 0, 1), ("train", 0, 2)}
    table = read_fragments(by_dest[("train", 0, 1)])
    assert table.num_rows == sum(1 for b in range(20) for i in range(50) if i % 3 == 1)


def test_a_flush_of_many_classes_writes_one_file_whose_batches_each_destination_reads(tmp_path):
    """Thousands of classes make O(flushes) staging files, not one per (flush, class, shard)."""
    w = FragmentWriter(str(tmp_path))
    for index in range(300):
        w.add_split("train", index, np.arange(index % 4 + 1) % 2, columns(index % 4 + 1, start=10 * index))
    w.add(("rejected", 0, 0), {"source": np.array(["f"], object), "row": np.array([3]), "id": np.array([None], object),
                               "label": np.array(["x"], object), "reason": np.array(["bad"], object)})
    reported = w.flush()
    assert len(os.listdir(tmp_path)) == 2  # the rows' file and the rejected records' file
    assert len(reported) == sum(min(i % 4 + 1, 2) for i in range(300)) + 1  # every (class, shard) with rows, the rejected
    for dest, fragment, n in reported:
        if dest[0] == "train":
            table = read_fragments([fragment])
            assert table.num_rows == n and set(table.column("label").to_pylist()) <= {0}
            ids = table.column("id").to_pylist()
            assert all(int(i[1:]) // 10 == dest[1] and int(i[1:]) % 2 == dest[2] for i in ids)


def test_output_table_sorts_by_order_and_keeps_rows_whole(tmp_path):
    w = FragmentWriter(str(tmp_path))
    w.add(("train", 0, 0), columns(10))
    (dest, path, n), = w.flush()
    out = output_table(read_fragments([path]), ["a"])
    assert out.column("id").to_pylist() == [f"r{i}" for i in range(9, -1, -1)]
    x = np.asarray(out.column("features").to_pylist())
    assert x[0].tolist() == [36.0, 37.0, 38.0, 39.0]  # r9's features travelled with it
    assert out.column("label_text").to_pylist() == ["a"] * 10
    assert out.schema.field("features").type == pa.list_(pa.float32(), 4)


def test_small_shards_of_many_classes_pack_into_groups_and_large_ones_stay_alone():
    from pipelines.outputs.merge import GROUP_SHARDS, SMALL_SHARD_BYTES, merge_groups

    small = (1, 1000)
    sizes = [small] * (GROUP_SHARDS + 3) + [(4, 10_000)] + [(1, SMALL_SHARD_BYTES)] + [small] * 2
    groups = merge_groups(sizes)
    assert groups[:GROUP_SHARDS] == [0] * GROUP_SHARDS  # at most GROUP_SHARDS shards a group
    assert groups[GROUP_SHARDS:GROUP_SHARDS + 3] == [1] * 3
    assert groups[GROUP_SHARDS + 3:GROUP_SHARDS + 5] == [-1, -1]  # several shards; one large shard
    assert groups[-2:] == [1, 1]  # the group goes on after them, in index order
    assert merge_groups([(1, 600_000)] * 60) == [i // 27 for i in range(60)]  # bounded by GROUP_BYTES (16 MiB)


def test_a_group_task_reads_each_staging_file_once_and_writes_each_shard_its_rows(tmp_path, monkeypatch):
    from pipelines.outputs import fragments
    from pipelines.outputs.merge import ShardTask, merge_shards

    w = FragmentWriter(str(tmp_path / "staging"), flush_bytes=800)  # several files, each with many classes
    for index in range(40):
        w.add_split("train", index, np.zeros(index % 3 + 1, np.int64), columns(index % 3 + 1, start=10 * index))
    reported = w.flush()
    files = {f.path for _, f, _ in reported}
    assert len(files) > 2
    opened = []
    real = fragments.storage.open_read
    monkeypatch.setattr(fragments.storage, "open_read", lambda p: opened.append(p) or real(p))
    by_dest = {}
    for dest, fragment, _ in reported:
        by_dest.setdefault(dest, []).append(fragment)
    tasks = [ShardTask(dest, frags, {"parquet": f"parquet/train/c{dest[1]}.parquet"}, {"features": 4},
                       {0: f"c{dest[1]}"}) for dest, frags in sorted(by_dest.items())]
    infos = merge_shards(tasks, str(tmp_path / "out"))
    assert sorted(opened) == sorted(files)  # each file once, for the 40 shards
    import pyarrow.parquet as pq

    for index, info in enumerate(infos):
        assert info["dest"] == ["train", index, 0] and info["records"] == index % 3 + 1
        ids = pq.read_table(tmp_path / "out" / f"parquet/train/c{index}.parquet").column("id").to_pylist()
        assert sorted(ids) == [f"r{10 * index + i}" for i in range(index % 3 + 1)]
