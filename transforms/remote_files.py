"""Files on object stores (gs://, s3://, any scheme Beam's FileSystems know): the URL half of
transforms/storage.py, which alone calls it.

URLs go through Beam's FileSystems, configured once per process with `configure(options)`
(the job's options, or the environment's defaults: S3 reads AWS_ENDPOINT_URL_S3 and the
usual AWS variables, GCS STORAGE_EMULATOR_HOST and Application Default Credentials). Beam
is imported on the first call, never at import time.

On an object store a folder is a prefix: `list_files` lists the objects under `url/`,
`delete` deletes them (on S3 in batches of 1,000). An object appears whole when its upload
completes, so `write_bytes` uploads it under its name in one go. S3 calls go through one
boto3 client per process, made from Beam's S3 options (`_s3_client`).
"""

from __future__ import annotations

import os
import shutil

_options = None  # the PipelineOptions given to Beam's FileSystems; None: not yet configured


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


def _s3_split(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://"):].partition("/")
    return bucket, key


def _s3(url: str) -> bool:
    return url.startswith("s3://")


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
    if "://" not in str(path):
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


def exists(url: str) -> bool:
    """An object at `url`."""
    if _s3(url):
        return url in sizes([url])
    return _fs().exists(url)


def list_files(folder: str, limit: int | None = None) -> list[str]:
    """Every object under `folder/` (full URLs, sorted)."""
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
    """The objects a Beam file pattern matches, as Beam's FileSystems.match finds them."""
    found = _fs().match([pattern], limits=[limit] if limit else None)[0].metadata_list
    return [m.path for m in found]


def sizes(urls: list[str]) -> dict[str, int]:
    """Bytes of each existing object (all of `urls` on the store of the first)."""
    if _s3(urls[0]):
        from botocore.exceptions import ClientError

        out = {}
        for p in urls:
            bucket, key = _s3_split(p)
            try:
                out[p] = int(_s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"])
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
        return out
    found = _fs().match(urls)
    return {m.path: m.size_in_bytes for r in found for m in r.metadata_list}


def open_read(url: str):
    from apache_beam.io.filesystem import CompressionTypes

    return _fs().open(url, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(url: str) -> bytes:
    if _s3(url):
        bucket, key = _s3_split(url)
        return _s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    with open_read(url) as f:
        return f.read()


def create(url: str):
    """A streaming upload to `url` (a file object to use in a `with` block): the object
    appears only once the block ends and the upload completes."""
    from apache_beam.io.filesystem import CompressionTypes

    return _fs().create(url, compression_type=CompressionTypes.UNCOMPRESSED)


def write_bytes(url: str, data: bytes) -> None:
    """`data` as the object `url`. On S3 one request: Beam's writer always makes a multipart
    upload, which S3 refuses to complete for an empty file."""
    if _s3(url):
        bucket, key = _s3_split(url)
        _s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    with create(url) as f:
        f.write(data)


def delete(urls: list[str]) -> None:
    """The objects among `urls` that exist; on S3 in batch requests."""
    on_s3 = [p for p in urls if _s3(p)]
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
    others = [p for p in urls if not _s3(p)]
    if others:
        fs = _fs()
        existing = [p for p in others if fs.exists(p)]
        if existing:
            fs.delete(existing)


def download_into(url: str, out) -> None:
    """The object `url` written into the open binary file `out`."""
    if _s3(url):
        _s3_client().download_fileobj(*_s3_split(url), out)
        return
    with open_read(url) as f:
        shutil.copyfileobj(f, out, 8 << 20)


def upload(src: str, url: str) -> None:
    """The local file `src` copied to the object `url`."""
    if _s3(url):
        _s3_client().upload_file(src, *_s3_split(url))
        return
    with open(src, "rb") as f:
        write_bytes(url, f.read())
