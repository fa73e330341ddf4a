"""S3 as a backup target, against a real S3-compatible server (moto's) on 127.0.0.1.

Every upload goes through a fault-injecting proxy (tests/conftest_s3.py) that counts
the requests and can answer 500/503 or stall; every object is downloaded again and
compared by SHA-256 after its upload.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError, ReadTimeoutError

import wedguard as wg
from conftest_s3 import FaultProxy, Request, fault_proxy, s3_client, s3_endpoint
from wedguard.io.s3 import (
    MIN_PART_SIZE,
    SourceChangedError,
    abort_upload,
    progress,
    state_path,
    upload_file,
)
from wedguard.testing import FakeClock

__all__ = ["s3_endpoint"]  # the module-scoped server fixture, used by name

MiB = 2**20
RATE = 20_000_000.0  # bytes/s: a 12 MiB object takes at least ~0.6 s
MULTIPART = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
FAIL_FAST = {
    "retries": {"total_max_attempts": 1, "mode": "standard"},
    "connect_timeout": 2,
    "read_timeout": 0.5,
}


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    with fault_proxy(s3_endpoint, stall_seconds=2.0) as p:
        yield p


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    name = "b-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def make_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def stored_sha256(client: Any, bucket: str, key: str) -> str:
    return hashlib.sha256(client.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()


def quiet_guard(**kwargs: Any) -> wg.Guard:
    kwargs.setdefault("rate", RATE)
    return wg.Guard(calendar=None, sources=[], sinks=[], **kwargs)


def min_seconds(size: int, guard: wg.Guard) -> float:
    """The least time ``size`` bytes may take at the guard's rate (one burst is free)."""
    burst = guard.rate * 0.2
    return max(0.0, (size - burst) / guard.rate)


# -- 1. boto3's own transfers, paced by the guard ---------------------------------------


@pytest.mark.parametrize("size", [1 * MiB + 17, 12 * MiB + 5], ids=["single-put", "multipart"])
def test_callback_paces_upload_file_at_the_guards_rate(
    proxy: FaultProxy, bucket: str, tmp_path: Path, size: int
) -> None:
    """``Callback=s.throttle``: the upload takes as long as the guard's rate says, the
    session counts every byte once, and the stored object is the file."""
    src = tmp_path / "photos.tar"
    digest = make_file(src, size)
    client = s3_client(proxy.endpoint)
    guard = quiet_guard()
    with guard.session("photos") as s:
        start = time.monotonic()
        client.upload_file(str(src), bucket, "photos.tar", Config=MULTIPART, Callback=s.throttle)
        elapsed = time.monotonic() - start
    assert s.report().bytes == size
    assert elapsed >= min_seconds(size, guard) * 0.95
    # the measured rate beyond the free burst is the guard's rate at most
    assert (size - guard.rate * 0.2) / elapsed <= guard.rate * 1.05
    parts = proxy.part_puts()
    assert sorted(parts) == ([1, 2, 3] if size > 5 * MiB else [])
    assert stored_sha256(client, bucket, "photos.tar") == digest


@pytest.mark.parametrize("size", [1 * MiB + 17, 12 * MiB + 5], ids=["single-put", "multipart"])
def test_wrapped_file_paces_upload_fileobj(
    proxy: FaultProxy, bucket: str, tmp_path: Path, size: int
) -> None:
    """``guard.wrap(f)`` given to ``upload_fileobj``: boto3 reads through the guard."""
    src = tmp_path / "db.dump"
    digest = make_file(src, size)
    client = s3_client(proxy.endpoint)
    guard = quiet_guard()
    with open(src, "rb") as f, guard.wrap(f, name="dump") as body:
        start = time.monotonic()
        client.upload_fileobj(body, bucket, "db.dump", Config=MULTIPART)
        elapsed = time.monotonic() - start
        report = body.session.report()
    assert elapsed >= min_seconds(size, guard) * 0.95
    if size > 5 * MiB:
        # multipart: s3transfer reads each part once into memory; counted once
        assert report.bytes == size
        assert sorted(proxy.part_puts()) == [1, 2, 3]
    else:
        # one PUT: botocore reads the file itself for the checksum and the signature
        # (HTTP), seeking back before it sends it; what is read again after a seek back
        # is not charged again, so the object is counted once
        assert report.bytes == size
        assert proxy.part_puts() == []
    assert stored_sha256(client, bucket, "db.dump") == digest


@pytest.mark.parametrize("callback", ["throttle", "progress"])
def test_callback_upload_survives_a_retried_part(
    proxy: FaultProxy, bucket: str, tmp_path: Path, callback: str
) -> None:
    """A part that fails once is retried by botocore: the upload completes, the object
    is intact, and the session counted the part's bytes again as they went again."""
    src = tmp_path / "photos.tar"
    digest = make_file(src, 11 * MiB)
    failed: list[Request] = []

    def once(r: Request) -> str | None:
        if r.part == 2 and not failed:
            failed.append(r)
            return "500"
        return None

    proxy.rule = once
    client = s3_client(proxy.endpoint, retries={"total_max_attempts": 3, "mode": "standard"})
    guard = quiet_guard(rate="off")
    with guard.session("photos") as s:
        cb = s.throttle if callback == "throttle" else progress(s)
        client.upload_file(str(src), bucket, "retried", Config=MULTIPART, Callback=cb)
    assert len(failed) == 1
    assert sorted(proxy.part_puts()) == [1, 2, 2, 3]
    assert s.report().bytes >= 11 * MiB
    assert stored_sha256(client, bucket, "retried") == digest


def test_progress_skips_the_negative_amounts_of_a_rewind() -> None:
    """s3transfer reports a body rewound with callbacks on as a negative amount;
    ``s.throttle`` refuses it (ConfigError), ``progress(s)`` skips it."""
    clock = FakeClock()
    guard = quiet_guard(rate="1MB/s", clock=clock)
    with guard.session("photos") as s:
        with pytest.raises(wg.ConfigError):
            s.throttle(-100)
        cb = progress(s)
        for amount in (500_000, -500_000, 500_000):
            cb(amount)
    assert s.report().bytes == 1_000_000
    # paced exactly as the two positive amounts alone
    plain_clock = FakeClock()
    with quiet_guard(rate="1MB/s", clock=plain_clock).session("plain") as plain:
        plain.throttle(500_000)
        plain.throttle(500_000)
    assert clock.monotonic() == pytest.approx(plain_clock.monotonic())
    assert clock.monotonic() > 0


# -- 2. the circuit breaker against a failing endpoint ----------------------------------


@pytest.mark.parametrize("fault", ["500", "503", "stall"])
def test_breaker_opens_on_server_faults_and_closes_when_they_stop(
    proxy: FaultProxy, bucket: str, fault: str
) -> None:
    """Three failed PUTs open the breaker; the fourth call sends nothing and raises
    CircuitOpenError with retry_after; after the recovery timeout one trial call goes
    (and reopens it while faults last); once they stop, a success closes it."""
    clock = FakeClock()
    breaker = wg.CircuitBreaker("s3", failure_threshold=3, recovery_timeout=60, clock=clock)
    guard = quiet_guard(rate="off", breaker=breaker)
    client = s3_client(proxy.endpoint, **FAIL_FAST)

    @guard.protect(cost=lambda key, data: len(data))
    def put(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=data)

    expected = ReadTimeoutError if fault == "stall" else ClientError
    proxy.mode = fault
    start = time.monotonic()
    for i in range(3):
        with pytest.raises(expected):
            put(f"k{i}", b"x" * 1000)
    assert breaker.state is wg.BreakerState.OPEN
    assert proxy.count(lambda r: r.method == "PUT") == 3  # no retries behind our back

    with pytest.raises(wg.CircuitOpenError) as info:
        put("k3", b"x" * 1000)
    assert info.value.retry_after == pytest.approx(60)
    assert info.value.breaker == "s3"
    assert proxy.count(lambda r: r.method == "PUT") == 3  # the open breaker sent nothing

    clock.advance(60)
    assert breaker.state is wg.BreakerState.HALF_OPEN
    with pytest.raises(expected):
        put("trial", b"x" * 1000)  # the trial call fails: open again
    assert breaker.state is wg.BreakerState.OPEN
    assert proxy.count(lambda r: r.method == "PUT") == 4

    proxy.mode = None
    clock.advance(60)
    put("healed", b"healthy")
    assert breaker.state is wg.BreakerState.CLOSED
    assert proxy.count(lambda r: r.method == "PUT") == 5
    assert client.get_object(Bucket=bucket, Key="healed")["Body"].read() == b"healthy"
    assert time.monotonic() - start < 15


def test_breaker_wrapping_upload_file_counts_whole_transfers(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    """``with breaker:`` around boto3's managed multipart transfer: a transfer whose
    part 2 stalls counts one failure; three open the breaker."""
    src = tmp_path / "photos.tar"
    digest = make_file(src, 11 * MiB)
    clock = FakeClock()
    breaker = wg.CircuitBreaker("s3", failure_threshold=3, recovery_timeout=5, clock=clock)
    client = s3_client(proxy.endpoint, **FAIL_FAST)
    proxy.rule = lambda r: "stall" if r.part == 2 else None
    for _ in range(3):
        with pytest.raises(Exception), breaker:  # s3transfer wraps the timeout
            client.upload_file(str(src), bucket, "photos.tar", Config=MULTIPART)
    assert breaker.state is wg.BreakerState.OPEN
    with pytest.raises(wg.CircuitOpenError), breaker:
        pytest.fail("an open breaker must not let the transfer start")
    proxy.rule = None
    clock.advance(5)
    with breaker:
        client.upload_file(str(src), bucket, "photos.tar", Config=MULTIPART)
    assert breaker.state is wg.BreakerState.CLOSED
    assert stored_sha256(client, bucket, "photos.tar") == digest


# -- 3. resumable multipart uploads (wedguard.io.s3.upload_file) ---------------------------


def uploads_in_progress(client: Any, bucket: str) -> list[str]:
    return [u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def test_upload_file_paced_in_parts_and_intact(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "app.dump"
    size = 12 * MiB + 3
    digest = make_file(src, size)
    client = s3_client(proxy.endpoint)
    guard = quiet_guard()
    start = time.monotonic()
    result = upload_file(guard, client, src, bucket, "app.dump", part_size="5MiB")
    elapsed = time.monotonic() - start
    assert (result.parts, result.uploaded_parts, result.reused_parts) == (3, 3, 0)
    assert not result.resumed
    assert result.size == size
    assert elapsed >= min_seconds(size, guard) * 0.95
    assert proxy.part_puts() == [1, 2, 3]
    assert stored_sha256(client, bucket, "app.dump") == digest
    assert not state_path(src, bucket, "app.dump").exists()
    assert uploads_in_progress(client, bucket) == []


@pytest.mark.parametrize("fault", ["500", "stall"])
def test_failed_upload_resumes_with_only_the_missing_parts(
    proxy: FaultProxy, bucket: str, tmp_path: Path, fault: str
) -> None:
    """Part 3 of 4 fails: the state file keeps the upload id and parts 1-2; the next
    call sends parts 3 and 4 only, completes, and the object is the file."""
    src = tmp_path / "app.dump"
    digest = make_file(src, 16 * MiB + 1234)
    client = s3_client(proxy.endpoint, **FAIL_FAST)
    guard = quiet_guard(rate="off")
    proxy.rule = lambda r: fault if r.part == 3 else None
    with pytest.raises((ClientError, ReadTimeoutError)):
        upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    state_file = state_path(src, bucket, "app.dump")
    state = json.loads(state_file.read_text())
    assert sorted(state["parts"]) == ["1", "2"]
    assert proxy.part_puts() == [1, 2, 3]
    assert uploads_in_progress(client, bucket) == [state["upload_id"]]

    proxy.rule = None
    proxy.clear()
    result = upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    assert proxy.part_puts() == [3, 4]
    assert proxy.count(lambda r: r.method == "POST" and "uploads" in r.query) == 0  # no new upload
    assert (result.uploaded_parts, result.reused_parts, result.parts) == (2, 2, 4)
    assert result.resumed
    assert result.upload_id == state["upload_id"]
    assert stored_sha256(client, bucket, "app.dump") == digest
    assert not state_file.exists()
    assert uploads_in_progress(client, bucket) == []


def test_part_sent_but_unrecorded_is_reused_only_when_its_bytes_match(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    """A part the server holds but the state never recorded (the answer was lost) is
    reused when its ETag is the MD5 of the local bytes, sent again otherwise."""
    src = tmp_path / "app.dump"
    digest = make_file(src, 16 * MiB)
    client = s3_client(proxy.endpoint, **FAIL_FAST)
    guard = quiet_guard(rate="off")
    proxy.rule = lambda r: "500" if r.part == 4 else None
    with pytest.raises(ClientError):
        upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB, state_dir=tmp_path)
    file = state_path(src, bucket, "app.dump", state_dir=tmp_path)
    state = json.loads(file.read_text())
    del state["parts"]["2"]  # as if part 2's answer never arrived
    state["parts"]["3"] = '"0123456789abcdef0123456789abcdef"'  # a recorded ETag that differs
    file.write_text(json.dumps(state))
    # part 3 on the server does not hold these bytes any more: replace it there
    client.upload_part(
        Bucket=bucket,
        Key="app.dump",
        UploadId=state["upload_id"],
        PartNumber=3,
        Body=os.urandom(5 * MiB),
    )
    proxy.rule = None
    proxy.clear()
    result = upload_file(
        guard, client, src, bucket, "app.dump", part_size=5 * MiB, state_dir=tmp_path
    )
    assert proxy.part_puts() == [3, 4]  # 2 reused by its MD5, 3 sent again
    assert (result.reused_parts, result.uploaded_parts) == (2, 2)
    assert stored_sha256(client, bucket, "app.dump") == digest


def test_changed_source_starts_a_new_upload_and_aborts_the_old(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "app.dump"
    make_file(src, 11 * MiB)
    client = s3_client(proxy.endpoint, **FAIL_FAST)
    guard = quiet_guard(rate="off")
    proxy.rule = lambda r: "503" if r.part == 3 else None
    with pytest.raises(ClientError):
        upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    old = uploads_in_progress(client, bucket)
    assert len(old) == 1
    digest = make_file(src, 11 * MiB + 1)  # tonight's dump
    proxy.rule = None
    proxy.clear()
    result = upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    assert not result.resumed
    assert proxy.part_puts() == [1, 2, 3]
    assert result.upload_id not in old
    assert uploads_in_progress(client, bucket) == []  # the old one was aborted
    assert stored_sha256(client, bucket, "app.dump") == digest


def test_abort_upload_drops_server_parts_and_state(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "app.dump"
    make_file(src, 11 * MiB)
    client = s3_client(proxy.endpoint, **FAIL_FAST)
    guard = quiet_guard(rate="off")
    proxy.rule = lambda r: "500" if r.part == 2 else None
    with pytest.raises(ClientError):
        upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    assert len(uploads_in_progress(client, bucket)) == 1
    assert abort_upload(client, src, bucket, "app.dump") is True
    assert uploads_in_progress(client, bucket) == []
    assert not state_path(src, bucket, "app.dump").exists()
    assert abort_upload(client, src, bucket, "app.dump") is False
    with pytest.raises(ClientError):
        client.head_object(Bucket=bucket, Key="app.dump")  # nothing half-made is visible


def test_upload_file_opens_the_guards_breaker_and_resumes_after_recovery(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    """Every request goes under the guard's breaker: three failures in a row open it
    (a success in between, part 1 or list_parts, counts too), then a call sends
    nothing; after recovery the upload resumes and completes."""
    src = tmp_path / "app.dump"
    digest = make_file(src, 11 * MiB)
    clock = FakeClock()
    breaker = wg.CircuitBreaker("s3", failure_threshold=3, recovery_timeout=30, clock=clock)
    guard = quiet_guard(rate="off", breaker=breaker)
    client = s3_client(proxy.endpoint, **FAIL_FAST)
    proxy.rule = lambda r: "503" if r.part == 2 else None
    with pytest.raises(ClientError):
        upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    assert breaker.state is wg.BreakerState.CLOSED  # one failure after part 1's success
    proxy.mode = "503"  # now the whole endpoint fails: list_parts too
    for _ in range(2):
        with pytest.raises(ClientError):
            upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    assert breaker.state is wg.BreakerState.OPEN
    seen = len(proxy.requests)
    with pytest.raises(wg.CircuitOpenError) as info:
        upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    assert info.value.retry_after == pytest.approx(30)
    assert len(proxy.requests) == seen  # the open breaker sent nothing
    assert proxy.part_puts() == [1, 2]
    proxy.mode = None
    proxy.rule = None
    clock.advance(30)
    result = upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    assert breaker.state is wg.BreakerState.CLOSED
    assert (result.reused_parts, result.uploaded_parts) == (1, 2)
    assert stored_sha256(client, bucket, "app.dump") == digest


def test_emergency_stop_mid_upload_then_resume(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    """A stop while part 2 is on the wire: part 3 is never sent; after resume() the
    next call sends part 3 only."""
    src = tmp_path / "app.dump"
    digest = make_file(src, 11 * MiB)
    client = s3_client(proxy.endpoint)
    guard = quiet_guard(rate="off")

    def stop_at_part_2(r: Request) -> None:
        if r.part == 2:
            guard.stop("failover")

    proxy.rule = stop_at_part_2
    with pytest.raises(wg.EmergencyStop):
        upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    assert proxy.part_puts() == [1, 2]
    guard.resume()
    proxy.rule = None
    proxy.clear()
    result = upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    assert proxy.part_puts() == [3]
    assert result.reused_parts == 2
    assert stored_sha256(client, bucket, "app.dump") == digest


def test_empty_file_and_small_file(proxy: FaultProxy, bucket: str, tmp_path: Path) -> None:
    client = s3_client(proxy.endpoint)
    guard = quiet_guard(rate="off")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    result = upload_file(guard, client, empty, bucket, "empty")
    assert result.size == 0
    assert client.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""
    small = tmp_path / "small"
    digest = make_file(small, 1000)
    result = upload_file(guard, client, small, bucket, "small")
    assert (result.parts, result.uploaded_parts) == (1, 1)
    assert stored_sha256(client, bucket, "small") == digest


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    guard = quiet_guard(rate="off")
    src = tmp_path / "f"
    src.write_bytes(b"x")
    for kwargs, field in [
        ({"part_size": MIN_PART_SIZE - 1}, "part_size"),
        ({"part_size": "lots"}, "part_size"),
        ({"part_size": True}, "part_size"),
        ({"bucket": ""}, "bucket"),
        ({"key": ""}, "key"),
    ]:
        args: dict[str, Any] = {"bucket": "b", "key": "k", **kwargs}
        with pytest.raises(wg.ConfigError) as info:
            upload_file(guard, object(), src, **args)
        assert info.value.field == field


def test_upload_the_server_forgot_starts_again_without_counting_a_failure(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    """An upload aborted behind our back (or expired by a lifecycle rule): list_parts
    answers NoSuchUpload, which is an answer, not a failure of the endpoint; the call
    starts a new upload and completes it."""
    src = tmp_path / "app.dump"
    digest = make_file(src, 11 * MiB)
    breaker = wg.CircuitBreaker("s3", failure_threshold=1, clock=FakeClock())
    guard = quiet_guard(rate="off", breaker=breaker)
    client = s3_client(proxy.endpoint, **FAIL_FAST)
    proxy.rule = lambda r: "500" if r.part == 3 else None
    with pytest.raises(ClientError):
        upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    breaker.reset()
    state = json.loads(state_path(src, bucket, "app.dump").read_text())
    client.abort_multipart_upload(Bucket=bucket, Key="app.dump", UploadId=state["upload_id"])
    proxy.rule = None
    proxy.clear()
    result = upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    assert breaker.state is wg.BreakerState.CLOSED  # a threshold of 1 would have opened
    assert not result.resumed
    assert result.upload_id != state["upload_id"]
    assert proxy.part_puts() == [1, 2, 3]
    assert stored_sha256(client, bucket, "app.dump") == digest


def test_a_file_written_to_during_its_upload_is_never_completed(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    """A dump still being written while part 2 goes up: the upload is aborted before
    it completes, so no object mixes two versions; the next call sends the new file."""
    src = tmp_path / "app.dump"
    make_file(src, 11 * MiB)
    client = s3_client(proxy.endpoint)
    guard = quiet_guard(rate="off")

    def append_at_part_2(r: Request) -> None:
        if r.part == 2:
            with open(src, "ab") as f:
                f.write(b"more rows")

    proxy.rule = append_at_part_2
    with pytest.raises(SourceChangedError):
        upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    with pytest.raises(ClientError):
        client.head_object(Bucket=bucket, Key="app.dump")
    assert uploads_in_progress(client, bucket) == []
    assert not state_path(src, bucket, "app.dump").exists()
    proxy.rule = None
    upload_file(guard, client, src, bucket, "app.dump", part_size=5 * MiB)
    assert stored_sha256(client, bucket, "app.dump") == hashlib.sha256(src.read_bytes()).hexdigest()


@pytest.mark.parametrize("text", ["", "{", '{"version": 1}', '{"version": 1, "size": "x"}', "[]"])
def test_a_damaged_state_file_starts_a_new_upload(
    proxy: FaultProxy, bucket: str, tmp_path: Path, text: str
) -> None:
    src = tmp_path / "app.dump"
    digest = make_file(src, 1000)
    state_path(src, bucket, "k").write_text(text)
    client = s3_client(proxy.endpoint)
    result = upload_file(quiet_guard(rate="off"), client, src, bucket, "k")
    assert not result.resumed
    assert stored_sha256(client, bucket, "k") == digest
    assert not state_path(src, bucket, "k").exists()


def test_an_interrupted_trial_request_gives_the_breakers_place_back(tmp_path: Path) -> None:
    """upload_file's request ended by KeyboardInterrupt while the breaker is half-open
    used to keep the trial place: every later upload was refused (CircuitOpenError)."""
    clock = FakeClock()
    breaker = wg.CircuitBreaker("s3", clock=clock, recovery_timeout=10)
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], breaker=breaker, clock=clock)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    class Client:  # the one request an empty file needs
        calls = 0

        def put_object(self, **kwargs: Any) -> dict[str, str]:
            self.calls += 1
            if self.calls == 1:
                raise KeyboardInterrupt
            return {"ETag": '"e"'}

    client = Client()
    breaker.trip("test")
    clock.advance(10)
    with pytest.raises(KeyboardInterrupt):
        upload_file(guard, client, empty, "bucket", "key", state_dir=tmp_path)
    assert upload_file(guard, client, empty, "bucket", "key", state_dir=tmp_path).etag == '"e"'
    assert breaker.state is wg.BreakerState.CLOSED


def test_a_trial_request_stopped_before_it_was_sent_gives_the_place_back(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    breaker = wg.CircuitBreaker("s3", clock=clock, recovery_timeout=10)
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], breaker=breaker, clock=clock)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    class Client:
        def put_object(self, **kwargs: Any) -> dict[str, str]:
            return {"ETag": '"e"'}

    breaker.trip("test")
    clock.advance(10)
    guard.stop("maintenance")
    with pytest.raises(wg.EmergencyStop):
        upload_file(guard, Client(), empty, "bucket", "key", state_dir=tmp_path)
    guard.resume()
    assert upload_file(guard, Client(), empty, "bucket", "key", state_dir=tmp_path).etag == '"e"'


def test_a_cutoff_ends_the_tree_copy_instead_of_failing_every_file(tmp_path: Path) -> None:
    """The session's cutoff inside one file's upload used to be listed as that file's
    failure, and the copy went on to fail the next file the same way."""
    from wedguard.io.s3 import S3CopyJob

    class Client:  # answers as S3 does, keeps nothing
        def head_object(self, **kwargs: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "404"}}, "HeadObject")

        def create_multipart_upload(self, **kwargs: Any) -> dict[str, str]:
            return {"UploadId": "u"}

        def upload_part(self, **kwargs: Any) -> dict[str, str]:
            return {"ETag": '"p"'}

        def complete_multipart_upload(self, **kwargs: Any) -> dict[str, str]:
            return {"ETag": '"e"'}

    tree = tmp_path / "tree"
    tree.mkdir()
    for name in "abc":
        (tree / name).write_bytes(b"x" * 100)
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], breaker=None)
    with guard.session("s3", max_bytes=150) as s:
        job = S3CopyJob(s, guard, Client(), state_dir=tmp_path / "state")
        plan = list(job.plan(tree, "s3://bucket/tree/"))
        job.copy_file(*plan[0])
        with pytest.raises(wg.CutoffReached):
            job.copy_file(*plan[1])
    assert job.copied == 1
    assert job.failed == []
