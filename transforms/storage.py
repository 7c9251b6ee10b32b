"""Paths on local disk or on object stores (gs://, s3://, any scheme Beam's FileSystems know).

The one file layer of every command: the jobs, the trainer, evaluate and predict. Local
paths use the os module (Beam is never imported for them, so the trainer starts where
Beam is not installed); URLs go to transforms/remote_files.py (Beam's FileSystems, and S3
through one boto3 client), configured once per process with `remote_files.configure`.

On an object store a folder is a prefix: `is_folder` asks whether any object lies under
`path/`, `list_files` lists them, `delete_folder` deletes them. A file appears whole or
not at all: on local disk `writing` writes a temporary file and renames it; on an object
store the object appears when its upload completes.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from contextlib import contextmanager

from transforms import remote_files


def is_remote(path: str) -> bool:
    return "://" in str(path)


def join(base: str, *parts: str) -> str:
    if not is_remote(base):
        return os.path.join(base, *parts)
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def exists(path: str) -> bool:
    """A file (an object) at `path`."""
    if not is_remote(path):
        return os.path.isfile(path)
    return remote_files.exists(path)


def is_folder(path: str) -> bool:
    """A local folder, or a prefix with at least one object under `path/`."""
    if not is_remote(path):
        return os.path.isdir(path)
    return bool(list_files(path, limit=1))


def list_files(folder: str, limit: int | None = None) -> list[str]:
    """Every file under `folder`, at any depth (full paths, sorted)."""
    if not is_remote(folder):
        found = [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names]
        return sorted(found)[:limit] if limit else sorted(found)
    return remote_files.list_files(folder, limit)


def match(pattern: str, limit: int | None = None) -> list[str]:
    """The files a Beam file pattern matches (`*` within a folder, `**` across folders, `?`,
    `[...]`; a trailing `/` lists the folder's files), as Beam's FileSystems.match finds them:
    on local disk the same paths in the same order, without importing Beam."""
    if is_remote(pattern):
        return remote_files.match(pattern, limit)
    if pattern.endswith(("/", "\\")):
        pattern += "*"
    prefix = re.match(r"^[^[*?]*", pattern).group(0)
    if prefix == pattern:
        return [pattern] if os.path.exists(pattern) else []
    folder = os.path.dirname(prefix)  # Beam's too: posixpath.dirname of the part before the wildcard
    if not os.path.exists(folder):
        return []
    regex = re.compile(translate_pattern(pattern))
    found = []
    for d, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(d, n)
            if regex.match(path):
                found.append(path)
                if limit is not None and len(found) >= limit:
                    return found
    return found


def translate_pattern(pattern: str) -> str:
    """A file pattern as a regular expression, as Beam's FileSystem.translate_pattern makes it
    (fnmatch's rules, except that `*` stops at a folder and `**` does not)."""
    i, n, res = 0, len(pattern), ""
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if i < n and pattern[i] == "*":
                res += ".*"
                i += 1
            else:
                res += r"[^/\\]*"
        elif c == "?":
            res += "."
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                res += r"\["
            else:
                stuff = pattern[i:j].replace("\\", "\\\\")
                i = j + 1
                if stuff[0] == "!":
                    stuff = "^" + stuff[1:]
                elif stuff[0] == "^":
                    stuff = "\\" + stuff
                res = f"{res}[{stuff}]"
        else:
            res += re.escape(c)
    return r"(?ms)" + res + r"\Z"


def sizes(paths: list[str]) -> dict[str, int]:
    """Bytes of each existing file."""
    if not paths:
        return {}
    if not is_remote(paths[0]):
        return {p: os.path.getsize(p) for p in paths if os.path.isfile(p)}
    return remote_files.sizes(paths)


def open_read(path: str):
    if not is_remote(path):
        return open(path, "rb")
    return remote_files.open_read(path)


def read_bytes(path: str) -> bytes:
    if is_remote(path):
        return remote_files.read_bytes(path)
    with open(path, "rb") as f:
        return f.read()


@contextmanager
def writing(path: str):
    """A file to write `path` through, there whole or not at all: locally a temporary file
    (`PATH.inprogress-<hex>`) renamed into place when the block ends without error, and
    removed when it raises; on an object store a streaming upload, whose object appears
    only once it completes."""
    if is_remote(path):
        with remote_files.create(path) as f:
            yield f
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.inprogress-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path: str, data: bytes) -> None:
    """`data` into `path`, whole or not at all (`writing`; on an object store one upload)."""
    if is_remote(path):
        remote_files.write_bytes(path, data)
        return
    with writing(path) as f:
        f.write(data)


def delete(paths: list[str]) -> None:
    """The files among `paths` that exist."""
    local = [p for p in paths if not is_remote(p)]
    for p in local:
        if os.path.isfile(p):
            os.remove(p)
    remote = [p for p in paths if is_remote(p)]
    if remote:
        remote_files.delete(remote)


def delete_folder(path: str) -> None:
    """A folder and everything in it; on an object store every object under `path/`."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    delete(list_files(path))


def download(src: str, dst: str) -> None:
    """A file (local or remote) copied to the local path `dst`, atomically."""
    with writing(dst) as out:
        if is_remote(src):
            remote_files.download_into(src, out)
        else:
            with open(src, "rb") as f:
                shutil.copyfileobj(f, out, 8 << 20)


def upload(src: str, dst: str) -> None:
    """The local file `src` copied to `dst` (local or remote)."""
    if not is_remote(dst):
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        shutil.copyfile(src, dst)
        return
    remote_files.upload(src, dst)
