"""Paths on local disk or on object stores (gs://, s3://, any scheme Beam's FileSystems know).

The one file layer of every command: the jobs, the trainer, evaluate and predict. Local
paths use the os module (Beam is never imported for them, so the trainer starts where
Beam is not installed); URLs go through Beam's FileSystems, configured once per process
with `configure(options)` (the job's options, or the environment's defaults: S3 reads
AWS_ENDPOINT_URL_S3 and the usual AWS variables, GCS STORAGE_EMULATOR_HOST and
Application Default Credentials).

On an object store a folder is a prefix: `is_folder` asks whether any object lies under
`path/`, `list_files` lists them, `delete_folder` deletes them one by one. An object
appears whole when its upload completes, so `write_bytes` uploads it under its name in
one go; on local disk it writes a temporary file and renames it. S3 calls share one
boto3 client per process, made from Beam's S3 options (`_s3_client`).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from contextlib import contextmanager

_options = None  # the PipelineOptions given to Beam's FileSystems; None: not yet configured


def is_remote(path: str) -> bool:
    return "://" in str(path)


def configure(options=None) -> None:
    """Beam's FileSystems take `options` (a PipelineOptions) for every later call in this
    process: endpoints, credentials, impersonation. Without options: Beam's defaults, which
    read the environment. Call before the first FileSystems call on a URL."""
    global _options, _S3_CLIENT
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    _options = options if options is not None else PipelineOptions([])
    FileSystems.set_options(_options)
    _S3_CLIENT = (None, None)  # made again with these options


_S3_CLIENT = (None, None)  # (pid, boto3 client): one client per process, made again after a fork


def _s3_client():
    """The S3 client of Beam's S3 options (endpoint, keys, region), one per process. Beam 2.77
    makes a new boto3 client for every call (about 0.2 s of CPU each); these calls share one."""
    global _S3_CLIENT
    if _S3_CLIENT[0] != os.getpid():
        from apache_beam.io.aws.clients.s3 import boto3_client

        _fs()
        _S3_CLIENT = (os.getpid(), boto3_client.Client(_options).client)
    return _S3_CLIENT[1]


def _s3_split(path: str) -> tuple[str, str]:
    bucket, _, key = path[len("s3://"):].partition("/")
    return bucket, key


def _s3(path: str) -> bool:
    return path.startswith("s3://")


def _fs():
    global _options
    try:
        from apache_beam.io.filesystems import FileSystems
    except ImportError as e:  # a trainer-only machine
        raise ValueError("object-store paths (gs://, s3://) need Apache Beam's file systems: "
                         "pip install 'balance-corpus[gcp]' (gs://) or 'balance-corpus[aws]' (s3://)") from e
    if _options is None:
        # On a Beam worker its SDK harness has set FileSystems' options (the job's): they are
        # kept, and this module's own S3 client takes them too. Elsewhere (the trainer's
        # commands): the environment's defaults. Beam offers no getter; tests/test_storage.py
        # fails if the attribute goes.
        beams = getattr(FileSystems, "_pipeline_options", None)
        if beams is not None:
            _options = beams
        else:
            configure()
    return FileSystems


def bucket_exists(path: str) -> bool:
    """Whether the bucket of a gs:// or s3:// URL exists (and these credentials may see it);
    True for local paths and other schemes."""
    if not is_remote(path):
        return True
    _fs()
    bucket = path.split("://", 1)[1].split("/", 1)[0]
    if path.startswith("gs://"):
        from apache_beam.io.gcp import gcsio

        return gcsio.GcsIO(pipeline_options=_options).get_bucket(bucket) is not None
    if _s3(path):
        from botocore.exceptions import ClientError

        try:
            _s3_client().head_bucket(Bucket=bucket)
        except ClientError:  # 404, or 403: not this account's to see
            return False
    return True


def join(base: str, *parts: str) -> str:
    if not is_remote(base):
        return os.path.join(base, *parts)
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def exists(path: str) -> bool:
    """A file (an object) at `path`."""
    if not is_remote(path):
        return os.path.isfile(path)
    if _s3(path):
        return path in sizes([path])
    return _fs().exists(path)


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
    if _s3(folder):
        bucket, key = _s3_split(folder.rstrip("/") + "/")
        found = []
        for page in _s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            found += [f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", [])]
            if limit and len(found) >= limit:
                break
        return sorted(found)[:limit] if limit else sorted(found)
    fs = _fs()
    pattern = fs.join(folder.rstrip("/"), "**")
    found = fs.match([pattern], limits=[limit] if limit else None)[0].metadata_list
    return sorted(m.path for m in found)


def match(pattern: str, limit: int | None = None) -> list[str]:
    """The files a Beam file pattern matches (`*` within a folder, `**` across folders, `?`,
    `[...]`; a trailing `/` lists the folder's files), as Beam's FileSystems.match finds them:
    on local disk the same paths in the same order, without importing Beam."""
    if is_remote(pattern):
        found = _fs().match([pattern], limits=[limit] if limit else None)[0].metadata_list
        return [m.path for m in found]
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
    if _s3(paths[0]):
        from botocore.exceptions import ClientError

        out = {}
        for p in paths:
            bucket, key = _s3_split(p)
            try:
                out[p] = int(_s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"])
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
        return out
    found = _fs().match(paths)
    return {m.path: m.size_in_bytes for r in found for m in r.metadata_list}


def open_read(path: str):
    if not is_remote(path):
        return open(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes

    return _fs().open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str) -> bytes:
    if _s3(path):
        bucket, key = _s3_split(path)
        return _s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    with open_read(path) as f:
        return f.read()


@contextmanager
def writing(path: str):
    """A file to write `path` through, there whole or not at all: locally a temporary file
    (`PATH.inprogress-<hex>`) renamed into place when the block ends without error, and
    removed when it raises; on an object store a streaming upload, whose object appears
    only once it completes."""
    if is_remote(path):
        from apache_beam.io.filesystem import CompressionTypes

        with _fs().create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
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
    """`data` into `path`, whole or not at all (`writing`). On S3 one request: Beam's writer
    always makes a multipart upload, which S3 refuses to complete for an empty file."""
    if _s3(path):
        bucket, key = _s3_split(path)
        _s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    with writing(path) as f:
        f.write(data)


def delete(paths: list[str]) -> None:
    """The files among `paths` that exist."""
    local = [p for p in paths if not is_remote(p)]
    for p in local:
        if os.path.isfile(p):
            os.remove(p)
    on_s3 = [p for p in paths if _s3(p)]
    for start in range(0, len(on_s3), 1000):  # S3's batch limit
        by_bucket: dict[str, list[dict]] = {}
        for p in on_s3[start:start + 1000]:
            bucket, key = _s3_split(p)
            by_bucket.setdefault(bucket, []).append({"Key": key})
        for bucket, keys in by_bucket.items():
            answer = _s3_client().delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            if answer.get("Errors"):
                e = answer["Errors"][0]
                raise OSError(f"s3://{bucket}/{e.get('Key')} could not be deleted: {e.get('Code')} "
                              f"{e.get('Message')} ({len(answer['Errors'])} such objects)")
    remote = [p for p in paths if is_remote(p) and not _s3(p)]
    if remote:
        fs = _fs()
        existing = [p for p in remote if fs.exists(p)]
        if existing:
            fs.delete(existing)


def delete_folder(path: str) -> None:
    """A folder and everything in it; on an object store every object under `path/`."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    delete(list_files(path))


def download(src: str, dst: str) -> None:
    """A file (local or remote) copied to the local path `dst`, atomically."""
    with writing(dst) as out:
        if _s3(src):
            _s3_client().download_fileobj(*_s3_split(src), out)
        else:
            with open_read(src) as f:
                shutil.copyfileobj(f, out, 8 << 20)


def upload(src: str, dst: str) -> None:
    """The local file `src` copied to `dst` (local or remote)."""
    if not is_remote(dst):
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        shutil.copyfile(src, dst)
        return
    if _s3(dst):
        _s3_client().upload_file(src, *_s3_split(dst))
        return
    with open(src, "rb") as f:
        write_bytes(dst, f.read())
