"""Real object storage and a real image CDN, both on 127.0.0.1, for the save tests.

* ``s3``: moto's S3 server (``moto_server``, from PyPI, in the test extra), started once per test
  session as a subprocess bound to 127.0.0.1. It speaks the S3 HTTP API that boto3 and s3fs
  use, including multipart uploads and versioning, so ``ObjectStoragePath("s3://mj_s3@bucket/...")``
  goes through the Amazon provider and s3fs exactly as it would against AWS. It was chosen over
  MinIO (a Go binary, not on the package registries we can use) and over in-process mocks
  (they would not exercise s3fs's HTTP path). Each test gets its own bucket.
* ``cdn``: a small HTTP server that streams image bytes in chunks, optionally cutting the
  connection part-way (a transfer that breaks), the way a CDN answers a relay's image link.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.hooks.conftest import SECRET_KEY, finished, make_hook  # noqa: F401 - the hook fixtures, shared

S3_CONN_ID = "mj_s3"


@pytest.fixture
def hook(emulator, make_hook):  # noqa: F811
    """A hook on the emulator (proxy dialect), with a key."""
    emulator.configure(api_key=SECRET_KEY)
    return make_hook(emulator.base_url, SECRET_KEY)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    """The running moto S3 server and a boto3 client on it."""

    endpoint: str
    process: subprocess.Popen

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a free 127.0.0.1 port, for the whole session."""
    pytest.importorskip("moto", reason="moto[server] is in the test extra")
    port = _free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)
    try:
        yield S3Server(endpoint, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass
class Bucket:
    """One test's bucket, and the ObjectStoragePath URL prefix that reaches it through ``mj_s3``."""

    name: str
    client: Any
    url: str

    def keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.name)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def versions(self, key: str) -> int:
        listed = self.client.list_object_versions(Bucket=self.name, Prefix=key)
        return len([v for v in listed.get("Versions", []) if v["Key"] == key])

    def open_uploads(self) -> list[str]:
        listed = self.client.list_multipart_uploads(Bucket=self.name)
        return [u["Key"] for u in listed.get("Uploads", [])]


@pytest.fixture
def bucket(s3_server, monkeypatch) -> Bucket:
    """A fresh versioned bucket, and the Airflow ``aws`` connection ``mj_s3`` pointing at moto."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv(f"AIRFLOW_CONN_{S3_CONN_ID.upper()}", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": s3_server.endpoint, "region_name": "us-east-1"},
    }))
    _forget_cached_filesystems()
    client = s3_server.client()
    name = f"mj-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield Bucket(name, client, f"s3://{S3_CONN_ID}@{name}")
    _forget_cached_filesystems()


def _forget_cached_filesystems() -> None:
    """Airflow and s3fs cache a filesystem per connection; each test's connection is new."""
    import s3fs

    from airflow.sdk.io import store

    store._STORE_CACHE.clear()
    s3fs.S3FileSystem.clear_instance_cache()


# ---------------------------------------------------------------------------------------------
# A CDN that streams image bytes
# ---------------------------------------------------------------------------------------------


def noise_image(size: int, seed: int = 7, magic: bytes = b"\x89PNG\r\n\x1a\n") -> Iterator[bytes]:
    """``size`` bytes that start like an image and do not compress, generated 64 KiB at a time."""
    rng = random.Random(seed)
    sent = 0
    first = True
    while sent < size:
        n = min(65536, size - sent)
        chunk = rng.randbytes(n)
        if first:
            chunk = (magic + chunk[len(magic):])[:n]
            first = False
        sent += n
        yield chunk


def noise_sha256(size: int, seed: int = 7, magic: bytes = b"\x89PNG\r\n\x1a\n") -> str:
    sha = hashlib.sha256()
    for chunk in noise_image(size, seed, magic):
        sha.update(chunk)
    return sha.hexdigest()


@dataclass
class _Route:
    body: Any  # bytes, or a callable returning an iterator of chunks
    size: int
    content_type: str
    cut_after: int | None = None
    cuts_left: int | None = None  # how many more replies to cut (None: every one)


@dataclass
class Cdn:
    """Serve ``path`` -> bytes (or a chunk generator), optionally cutting the connection part-way."""

    base_url: str = ""
    routes: dict[str, _Route] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def serve(self, path: str, body: Any, *, size: int | None = None, content_type: str = "image/png",
              cut_after: int | None = None, cuts: int | None = None) -> str:
        """Serve ``body``; with ``cut_after``, break the connection after that many bytes, ``cuts`` times."""
        if isinstance(body, bytes):
            size = len(body)
        assert size is not None
        self.routes[path] = _Route(body, size, content_type, cut_after, cuts)
        return self.base_url + path


@pytest.fixture
def cdn() -> Iterator[Cdn]:
    """A streaming image server on a free 127.0.0.1 port."""
    state = Cdn()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
            path = self.path.split("?")[0]
            state.hits.append(path)
            route = state.routes.get(path)
            if route is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(route.size))
            self.end_headers()
            chunks = [route.body] if isinstance(route.body, bytes) else route.body()
            cut = route.cut_after is not None and route.cuts_left != 0
            if cut and route.cuts_left is not None:
                route.cuts_left -= 1
            sent = 0
            try:
                for chunk in chunks:
                    if cut and sent + len(chunk) > route.cut_after:
                        self.wfile.write(chunk[: route.cut_after - sent])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                return

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
