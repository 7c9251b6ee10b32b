"""The trainer's object-store paths (gs://, s3://): data read from a local copy, run folders
written locally and uploaded as they change.

Keras saves and loads models, TensorBoard writes its logs and tf.data reads TFRecord only
through TensorFlow's own file systems, whose GCS client cannot be pointed at an emulator
and whose S3 support left TensorFlow. So every byte the trainer moves to or from an object
store goes through `transforms.storage` (Beam's FileSystems), and the libraries work on
local files:
- `local_data(OUT)`: the manifest and the shards it lists, copied once into the cache
  folder (files already there with the object's size are kept), the manifest last;
- `RunFolder(RUN)`: the run is written into a local folder that `push` uploads (changed
  files only; state.json, which names the checkpoint to resume from, last), and `pull`
  downloads for a resume, evaluate or predict.
A local path is used as it is, and nothing is copied.
"""

from __future__ import annotations

import hashlib
import json
import os

from transforms import storage

LAST = ("history.json", "state.json")  # uploaded after everything they refer to


CACHE_DIR_HELP = ("Local copies of gs:// and s3:// data, run folders and outputs "
                  "(default: ~/.cache/balance-corpus).")


def add_cache_dir(ap) -> None:
    """The --cache_dir flag of training.evaluate and training.predict (training.fit's is a
    `TrainConfig` field with the same help)."""
    ap.add_argument("--cache_dir", default=None, help=CACHE_DIR_HELP)


def cache_root(cache_dir: str | None) -> str:
    if cache_dir:
        return cache_dir
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "balance-corpus")


def _slot(url: str) -> str:
    """A readable, unique folder name for a URL."""
    tail = url.rstrip("/").rsplit("/", 1)[-1] or "root"
    return f"{tail}-{hashlib.sha256(url.rstrip('/').encode()).hexdigest()[:12]}"


def manifest_files(manifest: dict) -> list[str]:
    """Paths (relative to OUT) of every shard a manifest lists."""
    paths = [s["path"] for c in manifest.get("classes", []) for shards in c.get("shards", {}).values() for s in shards]
    for split in ("val", "test"):
        paths += [s["path"] for shards in manifest.get(split, {}).get("shards", {}).values() for s in shards]
    return sorted(set(paths))


def local_data(data: str, cache_dir: str | None = None) -> str:
    """A balance output: `data` itself when local; else a local copy of its manifest and shards."""
    if not storage.is_remote(data):
        return data
    source = storage.join(data, "manifest.json")
    if not storage.exists(source):
        raise ValueError(f"{source} does not exist: {data!r} is not a complete pipelines.balance output "
                         "(the manifest is written last; run the job, or let it finish).")
    raw = storage.read_bytes(source)
    rel = [p for p in manifest_files(json.loads(raw)) if not p.startswith("/") and ".." not in p.split("/")]
    root = os.path.join(cache_root(cache_dir), "data", _slot(data))
    old = os.path.join(root, "manifest.json")
    if os.path.isfile(old) and open(old, "rb").read() != raw:
        storage.delete_folder(root)  # another run's output: same names, maybe the same sizes
    remote = storage.sizes([storage.join(data, p) for p in rel])
    fetched = fetched_bytes = 0
    for p in rel:
        url, here = storage.join(data, p), os.path.join(root, p)
        if url not in remote:
            raise ValueError(f"{url} is listed in {source} but does not exist")
        if os.path.isfile(here) and os.path.getsize(here) == remote[url]:
            continue
        storage.download(url, here)
        fetched, fetched_bytes = fetched + 1, fetched_bytes + remote[url]
    if not os.path.isfile(old):
        storage.write_bytes(old, raw)
    print(f"{data}: {len(rel)} shards in the local copy {root} ({fetched} fetched, "
          f"{fetched_bytes / 2**20:.1f} MiB)", flush=True)
    return root


class RunFolder:
    """A run folder: local as it is, or a local working copy of a remote one."""

    def __init__(self, run: str, cache_dir: str | None = None):
        self.run = run
        self.remote = storage.is_remote(run)
        self.local = os.path.join(cache_root(cache_dir), "runs", _slot(run)) if self.remote else run
        self._pushed: dict[str, tuple[int, int]] = {}

    def pull(self, names: list[str] | None = None) -> RunFolder:
        """Downloads the remote run's files (only `names`, relative paths, when given) into the
        local folder, replacing what is there."""
        if not self.remote:
            return self
        storage.delete_folder(self.local)  # never a file of an earlier copy: only what is there now
        if names is None:
            found = storage.list_files(self.run)
            prefix = self.run.rstrip("/") + "/"
            rel = [p[len(prefix):] for p in found]
        else:
            rel = [n for n in names if storage.exists(storage.join(self.run, n))]
        for p in rel:
            here = os.path.join(self.local, p)
            storage.download(storage.join(self.run, p), here)
            self._pushed[p] = _stamp(here)
        os.makedirs(self.local, exist_ok=True)
        return self

    def push(self, names: list[str] | None = None) -> None:
        """Uploads the files that changed since the last push (history and state last), or only
        `names` (relative paths): what a command that pulled a few files wrote."""
        if not self.remote:
            return
        rel = sorted(os.path.relpath(os.path.join(d, n), self.local)
                     for d, _, names_ in os.walk(self.local) for n in names_ if ".inprogress-" not in n)
        if names is not None:
            rel = [p for p in rel if p in names]
        rel = [p for p in rel if p not in LAST] + [p for p in LAST if p in rel]
        for p in rel:
            here = os.path.join(self.local, p)
            stamp = _stamp(here)
            if self._pushed.get(p) != stamp:
                storage.upload(here, storage.join(self.run, p.replace(os.sep, "/")))
                self._pushed[p] = stamp

    def path(self, name: str) -> str:
        """Where a file of the run is written or read locally."""
        return os.path.join(self.local, name)


def _stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def local_output(path: str, cache_dir: str | None = None) -> str:
    """Where a command writes a single output file before it is uploaded: `path` when local,
    else a place in the cache folder."""
    if not storage.is_remote(path):
        return path
    return os.path.join(cache_root(cache_dir), "outputs", _slot(path), path.rsplit("/", 1)[-1])
