"""Webhook and Slack sinks against a real HTTP server on 127.0.0.1 that checks
signatures, then fails (500s, hangs, refused connections) and recovers."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wedguard as wg
from wedguard.runtime.alerts import Alert, AlertDispatcher, Severity
from wedguard.sinks import DeliveryError, SlackSink, WebhookSink, verify_signature
from wedguard.sinks.webhook import sign_headers

SECRET_NEW = "whsec_" + "c2VjcmV0LW5ldy1rZXktMTIzNDU2Nzg5MA=="
SECRET_OLD = "old-secret-rotating-out"


class Receiver:
    """A webhook receiver: verifies signatures; its ``mode`` makes it fail."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets
        self.mode = "ok"
        self.retry_after = "7"
        self.received: list[dict[str, Any]] = []
        self.slack: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        self.rejected = 0
        self.failed = 0
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                mode = receiver.mode
                if mode == "hang":
                    time.sleep(1.0)
                    self._reply(503)
                    return
                if mode in ("500", "429"):
                    with receiver.lock:
                        receiver.failed += 1
                    self._reply(int(mode), {"Retry-After": receiver.retry_after})
                    return
                if self.path.startswith("/hook") and not verify_signature(
                    body, self.headers, receiver.secrets
                ):
                    with receiver.lock:
                        receiver.rejected += 1
                    self._reply(401)
                    return
                if self.path.startswith("/slack-in-dispatcher"):
                    with receiver.lock:
                        receiver.slack.append(json.loads(body))
                    self._reply(200)
                    return
                with receiver.lock:
                    receiver.bodies.append(body)
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    receiver.received.append(json.loads(body))
                self._reply(200)

            def _reply(self, code: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    def url(self, path: str = "/hook/T0PSECRET") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_failures(self, n: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.failed < n and time.monotonic() < deadline:
            time.sleep(0.005)
        assert self.failed >= n


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([SECRET_NEW])
    yield r
    if r.server is not None:
        r.stop()


def _versions(notes: list[dict[str, Any]]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for note in notes:
        for alert in note["alerts"]:
            seen.setdefault(alert["key"], []).append(int(alert["summary"].split()[-1]))
    return seen


def _slack_versions(payloads: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Read (key, version) pairs back from the Slack message text."""
    seen: dict[str, list[int]] = {}
    for payload in payloads:
        text = payload["attachments"][0]["blocks"][0]["text"]["text"].strip("`")
        version = None
        for line in text.splitlines():
            if line.startswith("FIRING"):
                version = int(line.split()[-1])
            elif line.strip().startswith("key:") and version is not None:
                seen.setdefault(line.split(":", 1)[1].strip(), []).append(version)
    return seen


def test_dispatcher_over_webhook_survives_500s_hangs_and_refusals(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """No alert lost, per-key order kept, fire() quick throughout, signatures valid."""
    caplog.set_level(logging.DEBUG)
    hook = WebhookSink(receiver.url(), secret=[SECRET_NEW, SECRET_OLD], timeout=0.3)
    slack = SlackSink(receiver.url("/slack-in-dispatcher/T0PSECRET"), timeout=0.3)
    d = AlertDispatcher(
        routes={Severity.HIGH: [hook, slack]},
        group_wait=0,
        group_interval=0.01,
        backoff=0.02,
        backoff_max=0.1,
    )
    fired: dict[str, int] = {}
    worst = 0.0

    def fire(n: int) -> None:
        nonlocal worst
        for _ in range(n):
            i = sum(fired.values())
            key = f"session{i % 5}/slow"
            fired[key] = fired.get(key, -1) + 1
            t0 = time.perf_counter()
            d.fire(Alert(key, Severity.HIGH, f"API slower, version {fired[key]}"))
            worst = max(worst, time.perf_counter() - t0)

    try:
        fire(40)
        assert d.flush(timeout=10)
        ok_before = len(receiver.received)
        assert ok_before >= 1

        receiver.mode = "500"
        fire(40)
        receiver.wait_failures(3)

        receiver.mode = "hang"
        fire(40)
        time.sleep(0.5)

        receiver.stop()  # connection refused
        fire(40)
        time.sleep(0.2)
        assert not d.flush(timeout=0.1)

        receiver.mode = "ok"
        receiver.start()
        fire(40)
        assert d.flush(timeout=15)
    finally:
        d.close(5)

    assert worst < 0.05  # measured: a few microseconds; generous for noisy machines
    assert receiver.rejected == 0
    for seen in (_versions(receiver.received), _slack_versions(receiver.slack)):
        assert set(seen) == set(fired)
        for key, versions in seen.items():
            assert versions == sorted(versions), f"{key} out of order: {versions}"
            assert versions[-1] == fired[key]
    # every body is signed for both secrets, and each verifies alone
    for body, headers in zip(receiver.bodies, receiver.headers, strict=True):
        assert len(headers["webhook-signature"].split()) == 2
        assert verify_signature(body, headers, SECRET_NEW)
        assert verify_signature(body, headers, SECRET_OLD)
    assert "T0PSECRET" not in caplog.text
    assert SECRET_OLD not in caplog.text
    assert "retrying" in caplog.text


def test_webhook_emit_never_blocks_and_delivers_after_recovery(receiver: Receiver) -> None:
    receiver.mode = "hang"
    hook = WebhookSink(receiver.url(), secret=SECRET_NEW, timeout=0.2, backoff=0.01)
    worst = 0.0
    for i in range(200):
        t0 = time.perf_counter()
        hook.emit(Alert(f"k{i}", Severity.LOW, f"n {i}"))
        worst = max(worst, time.perf_counter() - t0)
    assert worst < 0.05
    assert not hook.flush(timeout=0.3)
    receiver.mode = "ok"
    assert hook.flush(timeout=15)
    hook.close()
    assert [r["key"] for r in receiver.received] == [f"k{i}" for i in range(200)]


def test_webhook_id_is_stable_across_retries(receiver: Receiver) -> None:
    receiver.mode = "500"
    hook = WebhookSink(receiver.url(), secret=SECRET_NEW, backoff=0.01)
    hook.emit(Alert("k", Severity.LOW, "x"))
    receiver.wait_failures(2)
    receiver.mode = "ok"
    assert hook.flush(5)
    hook.close()
    assert len(receiver.received) == 1
    assert receiver.headers[0]["webhook-id"]


def test_status_codes_map_to_delivery_errors(receiver: Receiver) -> None:
    hook = WebhookSink(receiver.url(), secret=SECRET_NEW, timeout=2)
    receiver.mode = "429"
    with pytest.raises(DeliveryError) as err:
        hook.send(Alert("k", Severity.LOW, "x"))
    assert err.value.retry_after == 7
    assert not err.value.permanent
    assert "T0PSECRET" not in str(err.value)
    receiver.mode = "500"
    with pytest.raises(DeliveryError) as err:
        hook.send(Alert("k", Severity.LOW, "x"))
    assert err.value.retry_after is None
    receiver.mode = "ok"
    bad = WebhookSink(receiver.url(), secret="wrong", timeout=2)
    with pytest.raises(DeliveryError) as err:
        bad.send(Alert("k", Severity.LOW, "x"))
    assert err.value.permanent  # 401: retrying cannot help
    receiver.stop()
    with pytest.raises(DeliveryError) as err:
        hook.send(Alert("k", Severity.LOW, "x"))
    assert "T0PSECRET" not in str(err.value)


def test_slack_payload_against_a_server(receiver: Receiver) -> None:
    slack = SlackSink(receiver.url("/slack/T0PSECRET"), timeout=2, backoff=0.01)
    receiver.mode = "500"
    slack.emit(Alert("photos/halt", Severity.CRITICAL, "backup halted", details="API +40 %"))
    slack.emit(
        Alert("photos/halt", Severity.CRITICAL, "backup halted").resolved(wg.SystemClock().now())
    )
    receiver.wait_failures(2)
    receiver.mode = "ok"
    assert slack.flush(10)
    slack.close()
    first, second = receiver.received
    assert first["text"] == "[FIRING] CRITICAL backup halted"
    attachment = first["attachments"][0]
    assert attachment["color"] == "#A30200"
    assert attachment["fallback"] == first["text"]
    assert first["blocks"][0]["type"] == "header"
    assert first["blocks"][0]["text"]["text"] == first["text"]
    assert [b["type"] for b in attachment["blocks"]] == ["section", "context"]
    assert "API +40 %" in attachment["blocks"][0]["text"]["text"]
    assert second["attachments"][0]["color"] == "#2EB886"
    assert "T0PSECRET" not in repr(slack)


def test_slack_colours_by_severity() -> None:
    slack = SlackSink("https://hooks.slack.com/services/T/B/X")
    colours = {s: slack.payload(Alert("k", s, "x"))["attachments"][0]["color"] for s in Severity}
    assert len(set(colours.values())) == 4


def test_urls_and_secrets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    monkeypatch.setenv("HOOK_URL", receiver.url())
    monkeypatch.setenv("HOOK_SECRET", SECRET_NEW)
    hook = WebhookSink(url_env="HOOK_URL", secret_env="HOOK_SECRET", timeout=2)
    hook.send(Alert("k", Severity.LOW, "x"))
    assert receiver.received[0]["key"] == "k"
    text = repr(hook) + str(hook.__dict__)
    assert "T0PSECRET" not in text
    assert SECRET_NEW not in text
    monkeypatch.delenv("HOOK_SECRET")
    with pytest.raises(wg.ConfigError) as err:
        WebhookSink(url_env="HOOK_URL", secret_env="HOOK_SECRET")
    assert err.value.field == "secret_env"
    assert err.value.value == "HOOK_SECRET"
    with pytest.raises(wg.ConfigError) as err:
        SlackSink(url_env="NOT_SET_ANYWHERE")
    assert err.value.field == "url_env"


def test_bad_webhook_configuration() -> None:
    with pytest.raises(wg.ConfigError) as err:
        WebhookSink("ftp://example.org/T0PSECRET")
    assert err.value.field == "url"
    assert "T0PSECRET" not in str(err.value)
    with pytest.raises(wg.ConfigError) as err:
        WebhookSink("https://example.org/", timeout=0)
    assert err.value.field == "timeout"
    with pytest.raises(wg.ConfigError) as err:
        WebhookSink()
    assert err.value.field == "url"


# -- verify_signature -----------------------------------------------------------------


def _signed(body: bytes, secrets: list[str], ts: int = 1_700_000_000) -> dict[str, str]:
    return sign_headers(body, secrets, msg_id="msg_1", timestamp=ts)


def test_verify_signature_replay_window() -> None:
    body = b'{"x":1}'
    h = _signed(body, ["s"])
    assert verify_signature(body, h, "s", now=1_700_000_000 + 300)
    assert verify_signature(body, h, "s", now=1_700_000_000 - 300)
    assert not verify_signature(body, h, "s", now=1_700_000_000 + 301)
    assert not verify_signature(body, h, "s", now=1_700_000_000 + 10, tolerance=5)
    assert verify_signature(body, _signed(body, ["s"], int(time.time())), "s")


def test_verify_signature_rejects_tampering_and_garbage() -> None:
    body = b'{"x":1}'
    h = _signed(body, ["s"])
    now = 1_700_000_000
    assert not verify_signature(b'{"x":2}', h, "s", now=now)
    assert not verify_signature(body, h, "other", now=now)
    assert not verify_signature(body, {**h, "webhook-id": "msg_2"}, "s", now=now)
    assert not verify_signature(body, {**h, "webhook-timestamp": "soon"}, "s", now=now)
    assert not verify_signature(body, {**h, "webhook-signature": "v1,AAAA"}, "s", now=now)
    assert not verify_signature(body, {}, "s", now=now)
    assert not verify_signature(body, None, "s", now=now)
    upper = {k.upper(): v for k, v in h.items()}
    assert verify_signature(body, upper, ["x", "s"], now=now)


def test_whsec_secrets_are_base64_keys() -> None:
    body = b"{}"
    h = _signed(body, [SECRET_NEW])
    assert verify_signature(body, h, SECRET_NEW, now=1_700_000_000)
    assert not verify_signature(body, h, SECRET_NEW[len("whsec_") :], now=1_700_000_000)


@given(
    body=st.binary(max_size=200),
    secret=st.text(min_size=1, max_size=40),
    flip=st.integers(min_value=0, max_value=199),
)
def test_signature_round_trip_property(body: bytes, secret: str, flip: int) -> None:
    h = _signed(body, [secret])
    assert verify_signature(body, h, secret, now=1_700_000_000)
    if body:
        i = flip % len(body)
        tampered = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
        assert not verify_signature(tampered, h, secret, now=1_700_000_000)


def test_secrets_stay_out_of_the_spool_and_the_logs(
    tmp_path: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.stop()  # refused
    hook = WebhookSink(receiver.url(), secret=SECRET_OLD, timeout=0.3)
    spool = tmp_path / "alerts.spool"
    d = AlertDispatcher(routes={Severity.HIGH: [hook]}, group_wait=0, spool=spool, backoff=0.01)
    d.fire(Alert("k", Severity.HIGH, "x"))
    assert not d.flush(timeout=0.2)
    d.close(timeout=0.1)
    text = spool.read_text() + caplog.text + repr(d) + str(d.stats())
    assert '"sink":"webhook"' in spool.read_text()
    assert "T0PSECRET" not in text
    assert SECRET_OLD not in text


def test_a_receiver_that_never_ends_its_answer_does_not_hold_the_delivery() -> None:
    """A receiver that answers 200 and then streams a body for ever (a broken proxy):
    the timeout bounds each read only, so reading the whole answer never ended. The
    sink reads at most 64 KiB of it: the delivery counts, and returns."""

    class Endless(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.end_headers()
            chunk = b"x" * 8192
            try:
                for _ in range(2000):  # 16 MB over 20 s: each read gets data in time
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    time.sleep(0.01)
            except OSError:
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = WebhookSink(f"http://127.0.0.1:{server.server_port}/hook", timeout=2)
        started = time.monotonic()
        hook.send(Alert("k", Severity.LOW, "x"))
        assert time.monotonic() - started < 10
        hook.close()
    finally:
        server.shutdown()
        server.server_close()
