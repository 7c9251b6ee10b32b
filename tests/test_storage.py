"""transforms/storage.py on local disk: the same matches as Beam's FileSystems, without Beam."""

from __future__ import annotations

import os

import pytest

from transforms import storage

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
