"""The S3 how-to's recipes, run with boto3 against moto's S3 server on 127.0.0.1.

* ``Callback=s.throttle`` on ``upload_file`` counts (and paces) what boto3 sent;
* ``guard.wrap(f)`` with ``upload_fileobj`` paces what boto3 reads;
* ``@guard.protect()`` around an upload of a wrapped file: one session per upload,
  the breaker, the wire paced, nothing charged twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wedguard as wg

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

MB = 1_000_000


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket="backups")
    yield client
    client.close()


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "photos.tar"
    path.write_bytes(os.urandom(3 * MB))
    return path


def guard() -> wg.Guard:
    # burst: one second's worth (2 MB); the other 1 MB waits about half a second
    return wg.Guard(rate="2MB/s", calendar=None, sources=[], sinks=[], log_events=False)


@pytest.mark.parametrize("forward_only", [False, True])
def test_upload_file_with_callback_session_throttle(
    s3: Any, archive: Path, forward_only: bool
) -> None:
    with guard() as g:
        start = time.monotonic()
        with g.session("s3-upload") as s:
            callback = (lambda n: s.throttle(n) if n > 0 else 0.0) if forward_only else s.throttle
            s3.upload_file(str(archive), "backups", "photos.tar", Callback=callback)
        took = time.monotonic() - start
        report = s.report()
    assert report.bytes == archive.stat().st_size
    assert took >= 0.4
    body = s3.get_object(Bucket="backups", Key="photos.tar")["Body"].read()
    assert body == archive.read_bytes()


def test_upload_fileobj_with_a_wrapped_file(s3: Any, archive: Path) -> None:
    with guard() as g:
        start = time.monotonic()
        with open(archive, "rb") as f, g.wrap(f, name="s3-upload") as body:
            s3.upload_fileobj(body, "backups", "photos.tar")
            session = body.session
        took = time.monotonic() - start
    assert session is not None
    assert session.report().bytes >= archive.stat().st_size
    assert took >= 0.4
    got = s3.get_object(Bucket="backups", Key="photos.tar")["Body"].read()
    assert got == archive.read_bytes()


def test_protected_upload_of_a_wrapped_file(s3: Any, archive: Path) -> None:
    with guard() as g:

        @g.protect()  # a session per upload and the breaker; the wrapped file paces it
        def upload(path: Path, key: str) -> None:
            with open(path, "rb") as f, g.wrap(f) as body:
                s3.upload_fileobj(body, "backups", key)

        start = time.monotonic()
        upload(archive, "a.tar")
        took = time.monotonic() - start
    assert took >= 0.4
    assert s3.head_object(Bucket="backups", Key="a.tar")["ContentLength"] == 3 * MB
