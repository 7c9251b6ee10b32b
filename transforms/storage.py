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
one go; on local disk it writes a temporary file and renames it.
"""

from __future__ import annotations

import os
import shutil
import uuid

_options = None  # the PipelineOptions given to Beam's FileSystems; None: not yet configured


def is_remote(path: str) -> bool:
    return "://" in str(path)


def configure(options=None) -> None:
    """Beam's FileSystems take `options` (a PipelineOptions) for every later call in this
    process: endpoints, credentials, impersonation. Without options: Beam's defaults, which
    read the environment. Call before the first FileSystems call on a URL."""
    global _options
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    _options = options if options is not None else PipelineOptions([])
    FileSystems.set_options(_options)


def _fs():
    try:
        from apache_beam.io.filesystems import FileSystems
    except ImportError as e:  # a trainer-only machine
        raise ValueError("object-store paths (gs://, s3://) need Apache Beam's file systems: "
                         "pip install 'balance-corpus[gcp]' (gs://) or 'balance-corpus[aws]' (s3://)") from e
    if _options is None:
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
    if path.startswith("s3://"):
        from apache_beam.io.aws.clients.s3 import boto3_client

        try:
            boto3_client.Client(_options).client.head_bucket(Bucket=bucket)
        except Exception:  # noqa: BLE001 - botocore's ClientError: 404 or 403
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
    fs = _fs()
    pattern = fs.join(folder.rstrip("/"), "**")
    found = fs.match([pattern], limits=[limit] if limit else None)[0].metadata_list
    return sorted(m.path for m in found)


def sizes(paths: list[str]) -> dict[str, int]:
    """Bytes of each existing file."""
    if not paths:
        return {}
    if not is_remote(paths[0]):
        return {p: os.path.getsize(p) for p in paths if os.path.isfile(p)}
    found = _fs().match(paths)
    return {m.path: m.size_in_bytes for r in found for m in r.metadata_list}


def open_read(path: str):
    if not is_remote(path):
        return open(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes

    return _fs().open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str) -> bytes:
    with open_read(path) as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    """`data` into `path`, whole or not at all: locally under a temporary name, then renamed;
    on an object store in one upload, since an object appears only once its upload completes
    (a rename there is a copy and a delete: twice the requests for nothing)."""
    if not is_remote(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.inprogress-{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return
    if not data and path.startswith("s3://"):
        put_empty_s3(path)
        return
    from apache_beam.io.filesystem import CompressionTypes

    with _fs().create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def put_empty_s3(path: str) -> None:
    """An empty object on S3. Beam's S3 writer always uses a multipart upload, and S3 refuses
    to complete one without parts (MalformedXML), so a 0-byte file is put in one request
    with the client Beam's options configure."""
    from apache_beam.io.aws.clients.s3 import boto3_client

    _fs()  # configured
    bucket, key = path[len("s3://"):].split("/", 1)
    boto3_client.Client(_options).client.put_object(Bucket=bucket, Key=key, Body=b"")


def delete(paths: list[str]) -> None:
    """The files among `paths` that exist."""
    local = [p for p in paths if not is_remote(p)]
    for p in local:
        if os.path.isfile(p):
            os.remove(p)
    remote = [p for p in paths if is_remote(p)]
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
    found = list_files(path)
    if found:
        _fs().delete(found)


def download(src: str, dst: str) -> None:
    """A file (local or remote) copied to the local path `dst`, atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    tmp = f"{dst}.inprogress-{uuid.uuid4().hex}"
    with open_read(src) as f, open(tmp, "wb") as out:
        shutil.copyfileobj(f, out, 8 << 20)
    os.replace(tmp, dst)


def upload(src: str, dst: str) -> None:
    """The local file `src` copied to `dst` (local or remote)."""
    if not is_remote(dst):
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        shutil.copyfile(src, dst)
        return
    with open(src, "rb") as f:
        write_bytes(dst, f.read())
