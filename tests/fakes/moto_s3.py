"""moto's S3 server on loopback, and S3Storage fixtures on top of it.

moto implements S3's documented REST API (path-style buckets, multipart uploads, ListObjectsV2,
bucket policies), so S3Storage talks to it through obstore exactly as it would to S3 or MinIO.
Buckets are made with boto3, AWS's own SDK, as an operator would make them.

Nothing here touches the process environment: the fake credentials are handed to each client
explicitly (``CREDENTIALS`` for obstore, ``environment`` for a subprocess such as the CLI).

- ``start_moto()``: a server of one's own, ``(endpoint, stop)``; the scale-out test uses it.
- ``moto_s3_endpoint``: one server for the whole session.
- ``s3_storage``: an S3Storage on a fresh public-read bucket and a random prefix, per test.
- ``broken_s3_storage``: the same, through a proxy that cuts every upload after 1 KiB.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from blogimg.storage.s3 import S3Storage

if TYPE_CHECKING:
    from obstore.store import RetryConfig

REGION = "us-east-1"
ACCESS_KEY_ID = "blogimg-test-access-key"
SECRET_ACCESS_KEY = "blogimg-test-secret-key"
#: obstore's names for the fake credentials: given explicitly, so no test sets them in os.environ.
CREDENTIALS = {"access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_ACCESS_KEY}
#: Fail within seconds, not obstore's 10 tries in 3 minutes: one retry, short pauses.
FAST_RETRY: RetryConfig = {
    "max_retries": 1,
    "retry_timeout": timedelta(seconds=10),
    "backoff": {"init_backoff": timedelta(milliseconds=10), "max_backoff": timedelta(milliseconds=100), "base": 2},
}
#: Small enough that even a small image's upload (a thumbnail of a few KiB) is cut off half-way;
#: requests without a body (HEAD, GET, list) pass whole.
CUT_AFTER_BYTES = 1024


def start_moto() -> tuple[str, Callable[[], None]]:
    """moto's S3 server on a free loopback port, in a thread: its endpoint and how to stop it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}", server.stop


def environment(endpoint: str, bucket: str) -> dict[str, str]:
    """What a subprocess (the CLI, a worker) needs to store into ``bucket`` on ``endpoint``."""
    return {"BLOGIMG_STORAGE": "s3", "BLOGIMG_STORAGE_BUCKET": bucket, "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}


def s3_client(endpoint: str) -> Any:
    """A boto3 client for ``endpoint`` with the fake credentials (never the environment's)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY)


def create_bucket(endpoint: str, *, public: bool = True) -> str:
    """A new bucket with a unique name; ``public``: anyone may GET its objects (the bucket
    policy a site serving public URLs straight from the bucket has)."""
    bucket = f"blogimg-test-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    if public:
        make_public(endpoint, bucket)
    return bucket


def make_public(endpoint: str, bucket: str) -> None:
    """Let anyone GET the bucket's objects, as a bucket serving public URLs is set up."""
    s3_client(endpoint).put_bucket_policy(Bucket=bucket, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::{bucket}/*"}],
    }))


def remove_bucket(endpoint: str, bucket: str) -> None:
    """Empty and delete ``bucket``, so a long session does not keep every test's 20 MB in memory."""
    client = s3_client(endpoint)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)


def storage_on(endpoint: str, bucket: str, *, prefix: str = "", url_expiry: int | None = None,
               retry: RetryConfig | None = None) -> S3Storage:
    return S3Storage(bucket, prefix=prefix, endpoint=endpoint, region=REGION, url_expiry=url_expiry,
                     config=CREDENTIALS, retry=retry)


class CuttingProxy:
    """A loopback TCP proxy to ``upstream`` that drops a connection (with a reset) once more than
    ``cut_after`` bytes of request body have gone through it, as a dying network would."""

    def __init__(self, upstream: tuple[str, int], cut_after: int = CUT_AFTER_BYTES) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="cutting-proxy").start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        with client, socket.create_connection(self.upstream) as server:
            threading.Thread(target=_pump, args=(server, client), daemon=True).start()
            headers_done, body_bytes, head = False, 0, b""
            while data := _receive(client):
                if not headers_done:
                    head += data
                    if b"\r\n\r\n" in head:
                        headers_done = True
                        body_bytes = len(head.split(b"\r\n\r\n", 1)[1])
                else:
                    body_bytes += len(data)
                if body_bytes > self.cut_after:
                    self.cuts += 1
                    # SO_LINGER 0: close() sends a reset, not an orderly end of the stream.
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                with contextlib.suppress(OSError):
                    server.sendall(data)


def _receive(connection: socket.socket) -> bytes:
    try:
        return connection.recv(65536)
    except OSError:
        return b""


def _pump(source: socket.socket, target: socket.socket) -> None:
    while data := _receive(source):
        try:
            target.sendall(data)
        except OSError:
            return


@pytest.fixture(scope="session")
def moto_s3_endpoint() -> Iterator[str]:
    """One moto S3 server for the session (each test makes its own bucket on it)."""
    endpoint, stop = start_moto()
    yield endpoint
    stop()


@pytest.fixture
def s3_storage(moto_s3_endpoint: str) -> Iterator[S3Storage]:
    bucket = create_bucket(moto_s3_endpoint)
    yield storage_on(moto_s3_endpoint, bucket, prefix=f"site-{uuid.uuid4().hex[:8]}/")
    remove_bucket(moto_s3_endpoint, bucket)


@pytest.fixture
def broken_s3_storage(moto_s3_endpoint: str) -> Iterator[S3Storage]:
    bucket = create_bucket(moto_s3_endpoint)
    host, port = moto_s3_endpoint.removeprefix("http://").split(":")
    proxy = CuttingProxy((host, int(port)))
    yield storage_on(proxy.endpoint, bucket, prefix="site/", retry=FAST_RETRY)
    proxy.close()
    remove_bucket(moto_s3_endpoint, bucket)
