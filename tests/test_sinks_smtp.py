"""SmtpSink against a real local SMTP server (aiosmtpd): STARTTLS with a certificate
made in the test, implicit TLS, login, text + HTML, failure and recovery."""

from __future__ import annotations

import email
import logging
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

import wedguard as wg
from wedguard.policy.alerting import Alert, Notification, Severity
from wedguard.sinks import SmtpSink

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
aiosmtpd_smtp = pytest.importorskip("aiosmtpd.smtp")

PASSWORD = "pa55-w0rd-never-logged"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:  # pragma: no cover
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(crt), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return key, crt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Handler:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.got = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        self.got.set()
        return "250 OK"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = (
        getattr(data, "login", b"") == b"backup"
        and getattr(data, "password", b"") == PASSWORD.encode()
    )
    return aiosmtpd_smtp.AuthResult(success=ok, handled=False)


class Server:
    def __init__(self, cert: tuple[Path, Path], *, implicit: bool = False, port: int = 0) -> None:
        key, crt = cert
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(crt, key)
        self.handler = Handler()
        self.port = port or free_port()
        kw: dict[str, Any]
        if implicit:
            kw = {"ssl_context": ctx}
        else:
            kw = {
                "tls_context": ctx,
                "require_starttls": True,
                "authenticator": authenticator,
                "auth_required": True,
                "auth_exclude_mechanism": ["LOGIN"],
            }
        self.controller = aiosmtpd_controller.Controller(
            self.handler, hostname="127.0.0.1", port=self.port, server_hostname="localhost", **kw
        )
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def client_ctx(cert: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert[1]))


@pytest.fixture
def server(cert: tuple[Path, Path]) -> Iterator[Server]:
    s = Server(cert)
    yield s
    s.stop()


def test_starttls_login_text_and_html(
    server: Server,
    client_ctx: ssl.SSLContext,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    sink = SmtpSink(
        "127.0.0.1",
        server.port,
        sender="backup@example.org",
        recipients=["ops@example.org", "dba@example.org"],
        username="backup",
        password_env="SMTP_PASSWORD",
        timeout=5,
        tls_context=client_ctx,
    )
    note = Notification(
        'CRITICAL{session="photos"}',
        "CRITICAL",
        (Alert("photos/halt", Severity.CRITICAL, "backup halted", details="API <+40 %>"),),
    )
    sink.send(note)
    (msg,) = server.handler.messages
    assert msg["Subject"] == "[wedguard] [FIRING:1] CRITICAL backup halted"
    assert msg["To"] == "ops@example.org, dba@example.org"
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()  # type: ignore[union-attr]
        for p in msg.walk()
        if not p.is_multipart()
    }
    assert "backup halted" in parts["text/plain"]
    assert "API <+40 %>" in parts["text/plain"]
    assert "API &lt;+40 %&gt;" in parts["text/html"]
    assert PASSWORD not in repr(sink) + caplog.text + str(msg)


def test_implicit_tls(cert: tuple[Path, Path], client_ctx: ssl.SSLContext) -> None:
    server = Server(cert, implicit=True)
    try:
        sink = SmtpSink(
            "127.0.0.1", server.port, sender="b@example.org", recipients="o@example.org",
            ssl=True, tls_context=client_ctx, timeout=5,
        )  # fmt: skip
        sink.send(Alert("k", Severity.HIGH, "slow"))
        assert server.handler.messages[0]["Subject"] == "[wedguard] [FIRING] HIGH slow"
    finally:
        server.stop()


def test_untrusted_certificate_is_refused(server: Server) -> None:
    sink = SmtpSink(
        "127.0.0.1", server.port, sender="b@example.org", recipients="o@example.org", timeout=5
    )
    with pytest.raises(wg.WedguardError):
        sink.send(Alert("k", Severity.HIGH, "slow"))
    assert server.handler.messages == []


def test_wrong_password_is_permanent(server: Server, client_ctx: ssl.SSLContext) -> None:
    from wedguard.sinks import DeliveryError

    sink = SmtpSink(
        "127.0.0.1", server.port, sender="b@example.org", recipients="o@example.org",
        username="backup", password="nope", tls_context=client_ctx, timeout=5,
    )  # fmt: skip
    with pytest.raises(DeliveryError) as err:
        sink.send(Alert("k", Severity.HIGH, "slow"))
    assert err.value.permanent
    assert "nope" not in str(err.value)


def test_emit_queues_until_the_server_comes_up(
    cert: tuple[Path, Path], client_ctx: ssl.SSLContext
) -> None:
    port = free_port()
    sink = SmtpSink(
        "127.0.0.1", port, sender="b@example.org", recipients="o@example.org",
        username="backup", password=PASSWORD, tls_context=client_ctx, timeout=2,
        backoff=0.02, backoff_max=0.1,
    )  # fmt: skip
    sink.emit(Alert("k", Severity.HIGH, "slow"))  # refused: no server yet
    assert not sink.flush(timeout=0.2)
    server = Server(cert, port=port)
    try:
        assert sink.flush(timeout=10)
        assert len(server.handler.messages) == 1
    finally:
        sink.close()
        server.stop()


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"sender": "nobody"}, "sender"),
        ({"recipients": []}, "recipients"),
        ({"recipients": ["x\r\nBcc: evil@example.org"]}, "recipients"),
        ({"port": 0}, "port"),
        ({"password": "x"}, "username"),
        ({"username": "u", "password_env": "WEDGUARD_UNSET_VARIABLE"}, "password_env"),
        ({"tls_context": "yes"}, "tls_context"),
    ],
)
def test_bad_configuration(kw: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"sender": "b@example.org", "recipients": "o@example.org"}
    args.update(kw)
    with pytest.raises(wg.ConfigError) as err:
        SmtpSink("localhost", **args)
    assert err.value.field == field


def test_transient_error_text_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from wedguard.sinks import DeliveryError

    sink = SmtpSink(
        "localhost", sender="b@example.org", recipients="o@example.org",
        username="backup", password=PASSWORD,
    )  # fmt: skip

    def refuse() -> None:
        raise OSError(f"server said: bad login {PASSWORD}")

    monkeypatch.setattr(sink, "_connect", refuse)
    with pytest.raises(DeliveryError) as err:
        sink.send(Alert("k", Severity.HIGH, "slow"))
    assert not err.value.permanent
    assert PASSWORD not in str(err.value)
    assert "bad login ***" in str(err.value)


def test_plain_smtp_makes_no_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = Handler()
    controller = aiosmtpd_controller.Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    made: list[object] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    try:
        sink = SmtpSink(
            "127.0.0.1", controller.port, sender="b@example.org", recipients="o@example.org",
            starttls=False, timeout=5,
        )  # fmt: skip
        sink.send(Alert("k", Severity.HIGH, "slow"))
        assert handler.messages[0]["Subject"] == "[wedguard] [FIRING] HIGH slow"
        assert made == []
    finally:
        controller.stop()
