"""Local object stores for the tests: gcp-storage-emulator (gs://) and moto's server (s3://).

Each server is a subprocess on 127.0.0.1 with a free port, started once per test process
and stopped at its exit; nothing reaches a real service. `Store.env` is what a process
needs to reach it:
- GCS: STORAGE_EMULATOR_HOST, and GOOGLE_APPLICATION_CREDENTIALS naming an
  `authorized_user` file that carries a token valid until 2999. Beam asks google-auth for
  Application Default Credentials; this file answers at once and its token never needs a
  refresh, so no process waits out Beam's ~30 s of retries looking for credentials (the
  emulator ignores the token).
- S3: AWS_ENDPOINT_URL_S3 (boto3 reads it; the job's own flag is --s3_endpoint_url) and
  dummy keys.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    """A port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int, proc: subprocess.Popen, what: str, seconds: float = 30) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {seconds} s")


@dataclass
class Store:
    scheme: str  # "gs" or "s3"
    endpoint: str
    env: dict[str, str]
    flags: list[str]  # the job's flags for this store

    def bucket(self) -> str:
        """A new, empty bucket: its URL (gs://NAME or s3://NAME)."""
        name = f"b{uuid.uuid4().hex[:12]}"
        if self.scheme == "s3":
            import boto3

            boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                         region_name="us-east-1").create_bucket(Bucket=name)
        else:
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            storage.Client(project="test", credentials=AnonymousCredentials(),
                           client_options={"api_endpoint": self.endpoint}).create_bucket(name)
        return f"{self.scheme}://{name}"


_started: dict[str, Store] = {}


def _start(argv: list[str], port: int, what: str) -> None:
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    atexit.register(lambda: (proc.kill(), proc.wait()))
    _wait(port, proc, what)


def gcs() -> Store:
    if "gs" not in _started:
        port = free_port()
        _start([os.path.join(BIN, "gcp-storage-emulator"), "start", "-H", "127.0.0.1", "--port", str(port), "-q",
                "--in-memory"], port, "gcp-storage-emulator")
        adc = os.path.join(tempfile.mkdtemp(), "adc.json")
        with open(adc, "w") as f:
            json.dump({"type": "authorized_user", "client_id": "emulator", "client_secret": "emulator",
                       "refresh_token": "emulator", "token": "emulator", "expiry": "2999-01-01T00:00:00Z"}, f)
        endpoint = f"http://127.0.0.1:{port}"
        env = {"STORAGE_EMULATOR_HOST": endpoint, "GOOGLE_APPLICATION_CREDENTIALS": adc,
               "GOOGLE_CLOUD_PROJECT": "test"}
        _started["gs"] = Store("gs", endpoint, env, [])
    return _started["gs"]


def s3() -> Store:
    if "s3" not in _started:
        port = free_port()
        _start([os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port, "moto_server")
        endpoint = f"http://127.0.0.1:{port}"
        env = {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": "us-east-1"}
        _started["s3"] = Store("s3", endpoint, env, [f"--s3_endpoint_url={endpoint}"])
    return _started["s3"]


def start(scheme: str) -> Store:
    return gcs() if scheme == "gs" else s3()
