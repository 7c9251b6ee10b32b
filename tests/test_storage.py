"""transforms/storage.py on local disk: the same matches as Beam's FileSystems, without Beam."""

from __future__ import annotations

import os

import pytest

from transforms import remote_files, storage

PATTERNS = ["*.parquet", "a/*.parquet", "a/**.parquet", "a/**", "a/", "a/b/", "a", "a/x.parquet", "a/b/c/*",
            "a/?.csv", "a/[xy].parquet", "a/[!x].parquet", "a/**/z.*", "a/b", "nothing/*", "a/x*", "a/[x"]


@pytest.mark.parametrize("relative", [True, False])
def test_match_equals_beams(tmp_path, monkeypatch, relative):
    from apache_beam.io.filesystems import FileSystems

    for rel in ("a/x.parquet", "a/y.parquet", "a/z.csv", "a/b/x.parquet", "a/b/c/z.txt", "a/b/c/d/z.parquet",
                "a/[x", "top.parquet"):
        os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    for p in PATTERNS:
        pattern = p if relative else str(tmp_path / p) + ("/" if p.endswith("/") else "")
        beam = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        assert storage.match(pattern) == beam, pattern
        assert storage.match(pattern, limit=1) == beam[:1], pattern


def test_a_beam_workers_filesystem_options_are_kept():
    """On a worker, Beam's harness sets FileSystems' options; the first storage call keeps them
    (and this is the Beam attribute it reads: the test fails if Beam renames it)."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions, S3Options

    saved = remote_files._options, getattr(FileSystems, "_pipeline_options", None)
    try:
        job = PipelineOptions(["--s3_endpoint_url=http://127.0.0.1:1"])
        FileSystems.set_options(job)
        remote_files._options = None
        remote_files._fs()
        assert FileSystems._pipeline_options is job and remote_files._options is job
        assert remote_files._options.view_as(S3Options).s3_endpoint_url == "http://127.0.0.1:1"
    finally:
        remote_files._options = saved[0]
        FileSystems.set_options(saved[1])
