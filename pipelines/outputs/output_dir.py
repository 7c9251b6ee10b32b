"""The output folder: whose it is, who writes it now, and what the job may delete in it.

The job never deletes a file it cannot prove it wrote:
- before a run, the input and OUT must not overlap (an input file under OUT, or a
  pattern that would read OUT's files), and a non-empty OUT must be an earlier output
  of these jobs (manifest.json, histogram.json or our staging folder), unless
  --overwrite says otherwise;
- one run at a time: OUT/.lock, created atomically, names the host, process and start
  time of the run that holds it;
- what a run may remove is listed in its own staging folder before anything is
  written: the shards of the manifest it replaces (`previous`), and the paths it will
  write itself (`intent`). At the end, files on those lists that the new manifest does
  not name are removed, with the temporary files the writer names after them; files of
  anyone else stay where they are, whatever folder they are in.

All paths go through Beam's FileSystems, so OUT may be local or on an object store
(where the lock is advisory: see docs/RUNNING.md).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import uuid

from apache_beam.io.filesystem import FileSystem
from apache_beam.io.filesystems import FileSystems

from pipelines.outputs.formats import write_atomic
from pipelines.outputs.fragments import delete, mkdirs
from pipelines.outputs.layout import STAGING, shard_name
from transforms import storage

STAGING = STAGING
LOCK = ".lock"
OURS = ("manifest.json", "histogram.json", STAGING, LOCK)  # any of these makes OUT an earlier output of ours
RUN_ID = re.compile(r"[0-9a-f]{32}|dry-run")
TEMPORARY = re.compile(r"^(.*)\.inprogress-[0-9a-f]{32}$")  # write_atomic's names
log = logging.getLogger("pipelines.balance")


class OutputInUse(ValueError):
    """Another run holds OUT's lock."""


def _local(path: str) -> bool:
    return "://" not in path


def _norm(path: str) -> str:
    return os.path.abspath(path) if _local(path) else path.rstrip("/")


def _under(path: str, folder: str) -> bool:
    path, folder = _norm(path), _norm(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _base(pattern: str) -> str:
    """The folder part of a pattern before its first wildcard."""
    cut = min([i for i, ch in enumerate(pattern) if ch in "*?["] or [len(pattern)])
    head = pattern[:cut]
    return head if head.endswith("/") or cut == len(pattern) else head.rsplit("/", 1)[0] + "/"


def check_no_overlap(input_pattern: str, image_folders: bool, out: str) -> None:
    """Refuses an input that is, or could be, inside OUT, and an OUT the input would read."""
    if image_folders:
        if _under(out, input_pattern):
            raise ValueError(f"--output {out!r} is inside the image corpus --input {input_pattern!r}: its folders "
                             "would be read as classes. Write the output outside the corpus.")
        if _under(input_pattern, out):
            raise ValueError(f"--input {input_pattern!r} is inside --output {out!r}: the job could replace its "
                             "own input. Write the output to a folder outside the corpus.")
        return
    regex = re.compile(FileSystem.translate_pattern(_norm(input_pattern)))
    ours = [FileSystems.join(_norm(out), rel) for rel in (
        "parquet/train/class=x/part-00000-of-00001.parquet", "parquet/val/part-00000-of-00001.parquet",
        "tfrecord/train/class=x/part-00000-of-00001.tfrecord.gz", "rejected/part-00000-of-00001.jsonl")]
    if any(regex.match(p) for p in ours):
        raise ValueError(f"--input {input_pattern!r} would read the job's own output in --output {out!r} "
                         "(the pattern reaches into it). Write the output outside the input folder, or "
                         "narrow the pattern.")
    base = _base(_norm(input_pattern))
    if _under(base, out) or _under(out, base):
        inside = [m.path for r in FileSystems.match([input_pattern]) for m in r.metadata_list
                  if _under(m.path, out)]
        if inside:
            raise ValueError(f"--input {input_pattern!r} matches {len(inside)} file(s) inside --output {out!r} "
                             f"(e.g. {inside[0]}): the job could replace its own input. Move the input, or "
                             "write the output elsewhere.")


def _entries(out: str, limit: int = 6) -> list[str]:
    """A few names directly in OUT (folders with a trailing /)."""
    if _local(out):
        if not os.path.isdir(out):
            return []
        names = sorted(os.listdir(out))
        return [n + ("/" if os.path.isdir(os.path.join(out, n)) else "") for n in names][:limit]
    found = FileSystems.match([FileSystems.join(out, "**")], limits=[limit])[0].metadata_list
    return [m.path[len(out.rstrip("/")) + 1:] for m in found]


def check_ours(out: str, overwrite: bool) -> None:
    """A non-empty OUT must be an earlier output of these jobs, unless `overwrite`."""
    present = _entries(out, limit=1000)
    names = {p.rstrip("/").split("/")[0] for p in present}
    if not present or names & set(OURS) or overwrite:
        return
    shown = ", ".join(present[:6]) + (", ..." if len(present) > 6 else "")
    raise ValueError(f"--output {out!r} is not empty and is not an earlier output of this job (it holds {shown}): "
                     "name a new or empty folder, or pass --overwrite to write into it (only the job's own "
                     "files are ever replaced or removed).")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class Lock:
    """OUT/.lock for the length of a run: atomic create locally, best effort on object stores."""

    def __init__(self, out: str, command: str):
        self.path = FileSystems.join(out, LOCK)
        self.token = uuid.uuid4().hex
        self.info = {"host": socket.gethostname(), "pid": os.getpid(), "command": command, "token": self.token,
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def __enter__(self) -> Lock:
        data = json.dumps(self.info).encode()
        for _ in range(2):
            if self._create(data):
                return self
            holder = self._read()
            if holder.get("host") == self.info["host"] and isinstance(holder.get("pid"), int) \
                    and not pid_alive(holder["pid"]):
                log.warning("taking over %s: its run (pid %s, started %s) is gone", self.path, holder["pid"],
                            holder.get("started"))
                storage.delete([self.path])
                continue
            self._held(holder)
        self._held(self._read())
        return self

    def _create(self, data: bytes) -> bool:
        """The lock file, unless it exists: atomic on local disk; on object stores a check, then
        a write (advisory: two hosts starting in the same second can both pass)."""
        if not _local(self.path):
            if storage.exists(self.path):
                return False
            storage.write_bytes(self.path, data)
            return True
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def _read(self) -> dict:
        try:
            return json.loads(storage.read_bytes(self.path).decode() or "{}")
        except Exception:  # noqa: BLE001 - a lock being written, or damaged: still a lock
            return {}

    def _held(self, holder: dict) -> None:
        who = (f"{holder.get('command', 'a run')} on host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, "
               f"started {holder.get('started', '?')}")
        raise OutputInUse(f"{self.path} is held by {who}: one run writes an output folder at a time. Wait for it, "
                          "use another --output, or delete the lock file if that run is gone.")

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        """Removes the lock file if it is still this run's."""
        if self._read().get("token") == self.token:
            storage.delete([self.path])


# ---------------------------------------------------------------- what a run may delete

def listed_files(manifest: dict) -> list[str]:
    """Paths (relative to OUT) of every file a manifest names: shards of every split, rejected, report."""
    paths = ["report.png"]
    for c in manifest.get("classes", []):
        paths += [s["path"] for shards_ in c.get("shards", {}).values() for s in shards_]
    for split in ("val", "test"):
        paths += [s["path"] for shards_ in manifest.get(split, {}).get("shards", {}).values() for s in shards_]
    rejected = manifest.get("rejected", {}).get("path", "rejected/")
    paths.append(f"{rejected.rstrip('/')}/{shard_name(0, 1)}.jsonl")
    return sorted(set(paths))


def _write_list(staging: str, name: str, paths: list[str]) -> None:
    mkdirs(staging)
    write_atomic(FileSystems.join(staging, name), json.dumps(sorted(set(paths))).encode())


def record_previous(out: str, staging: str) -> None:
    """Before a run touches OUT: the files of the manifest it will replace go on its list."""
    path = FileSystems.join(out, "manifest.json")
    previous: list[str] = []
    if FileSystems.exists(path):
        try:
            with FileSystems.open(path) as f:
                previous = listed_files(json.load(f))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("%s cannot be read (%s): the files it lists will not be removed", path, e)
    _write_list(staging, "previous.json", previous)


def record_intent(staging: str, paths: list[str]) -> None:
    """The paths a run will write (relative to OUT), listed before it writes any of them."""
    _write_list(staging, "intent.json", paths)


def _staged_runs(out: str) -> list[str]:
    """The staging folders (of this and earlier runs) that hold a run's lists."""
    root = FileSystems.join(out, STAGING)
    if not storage.is_folder(root):
        return []
    found = {m.path[len(root.rstrip("/")) + 1:].split("/")[0]
             for r in FileSystems.match([FileSystems.join(root, "*/*.json")]) for m in r.metadata_list}
    return sorted(FileSystems.join(root, name) for name in found if RUN_ID.fullmatch(name))


def _read_list(path: str) -> list[str]:
    if not FileSystems.exists(path):
        return []
    with FileSystems.open(path) as f:
        return [p for p in json.load(f) if isinstance(p, str)]


def remove_stale(out: str, keep: set[str]) -> int:
    """Removes files that this or an earlier run of ours listed (previous / intent) and the new
    output does not keep, and the temporary files named after them. Returns how many."""
    owned: set[str] = set()
    for run in _staged_runs(out):
        for name in ("previous.json", "intent.json"):
            owned.update(_read_list(FileSystems.join(run, name)))
    owned = {p for p in owned if not p.startswith("/") and ".." not in p.split("/")}
    stale = [FileSystems.join(out, p) for p in sorted(owned - keep)]
    folders = {p.split("/")[0] for p in owned | keep}
    temporary = []
    for folder in sorted(folders):
        pattern = FileSystems.join(out, folder, "**")
        for m in (m for r in FileSystems.match([pattern]) for m in r.metadata_list):
            hit = TEMPORARY.match(m.path)
            if hit and hit.group(1)[len(out.rstrip("/")) + 1:] in owned | keep:
                temporary.append(m.path)
    gone = [p for p in stale if FileSystems.exists(p)] + temporary
    if gone:
        log.info("removing %d files of earlier runs that this output no longer lists", len(gone))
        delete(gone)
        _remove_empty_folders(out, gone)
    return len(gone)


def _remove_empty_folders(out: str, removed: list[str]) -> None:
    """Local disk: folders left empty by the removal (object stores have no folders)."""
    if not _local(out):
        return
    root = os.path.abspath(out)
    folders = sorted({os.path.dirname(os.path.abspath(p)) for p in removed}, key=len, reverse=True)
    for folder in folders:
        while folder.startswith(root + os.sep) and os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
            folder = os.path.dirname(folder)


def remove_staging(out: str) -> None:
    """This and earlier runs' staging folders (named by us), then OUT/.staging when it is empty.
    On an object store a folder is its objects: each run's are listed and deleted."""
    root = FileSystems.join(out, STAGING)
    if _local(root):
        if not os.path.isdir(root):
            return
        for name in os.listdir(root):
            if RUN_ID.fullmatch(name):
                storage.delete_folder(os.path.join(root, name))
        if not os.listdir(root):
            os.rmdir(root)
        return
    runs = {p[len(root.rstrip("/")) + 1:].split("/")[0] for p in storage.list_files(root)}
    for name in sorted(runs):
        if RUN_ID.fullmatch(name):
            storage.delete_folder(FileSystems.join(root, name))


def remove_run_staging(staging: str) -> None:
    """One run's staging folder, then OUT/.staging if nothing else (another run's lists) is in it."""
    storage.delete_folder(staging)
    root = staging.rstrip("/").rsplit("/", 1)[0]
    if _local(root) and os.path.isdir(root) and not os.listdir(root):
        os.rmdir(root)
