"""Secrets planted everywhere a user may put one (a Redis password, a webhook token, a
signing key, an SMTP password, a DSN password and other passwords in a child's command
line) appear in no output: not in the command line's stdout or stderr, log records,
status files, event files, reprs, rendered configuration or exception messages."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from conftest_redis import RedisServer, own_redis_server
from wedguard.config import load_config
from wedguard.errors import ConfigError
from wedguard.policy.alerting import Alert, Severity
from wedguard.sinks import DeliveryError, Secret, SlackSink, SmtpSink, WebhookSink

SRC = str(Path(__file__).resolve().parent.parent / "src")
__all__ = ["own_redis_server"]  # a fixture, imported for its use below

REDIS_PW = "RedisPw7f3kQ2"
HOOK_TOKEN = "HookTok4b8Zr1Lm"
SIGNING = "SignKey9w2Pq7Xz"
SMTP_PW = "SmtpPw3j8Kd5Vn"
DSN_PW = "DsnPw6h2TnW8"
ARG_PW = "ArgPw1x7YbR4"
ENV_PW = "EnvPw5m3GsE9"
TOKEN_ARG = "TokPw8s2LdQ6"
ALL = (REDIS_PW, HOOK_TOKEN, SIGNING, SMTP_PW, DSN_PW, ARG_PW, ENV_PW, TOKEN_ARG)


def _closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_clean(texts: Iterable[str], where: str) -> None:
    for text in texts:
        for secret in ALL:
            assert secret not in text, f"{secret!r} leaked into {where}: {text!r}"


def secret_env(port: int) -> dict[str, str]:
    return {
        "WG_T_REDIS_URL": f"redis://:{REDIS_PW}@127.0.0.1:{port}/0?password={REDIS_PW}",
        "WG_T_HOOK": f"http://127.0.0.1:{port}/hooks/{HOOK_TOKEN}",
        "WG_T_SIGN": SIGNING,
        "WG_T_SMTP": SMTP_PW,
    }


def config_text(port: int) -> str:
    return f"""sources = []
[calendar]
preset = "none"
[redis]
url_env = "WG_T_REDIS_URL"
timeout = 0.2
[[sinks]]
type = "webhook"
url_env = "WG_T_HOOK"
secret_env = "WG_T_SIGN"
max_attempts = 1
timeout = 1
[[sinks]]
type = "smtp"
host = "127.0.0.1"
port = {port}
sender = "backup@example.org"
recipients = ["ops@example.org"]
starttls = false
username = "backup"
password_env = "WG_T_SMTP"
max_attempts = 1
timeout = 1
[[sinks]]
type = "jsonl"
path = "events.jsonl"
[[sinks]]
type = "logging"
"""


CHILD_ARGS = (
    f"postgresql://backup:{DSN_PW}@db.example.org/app",
    f"--password={ARG_PW}",
    f"PGPASSWORD={ENV_PW}",
    "--token",
    TOKEN_ARG,
)


def test_no_secret_in_any_output_of_the_command_line(tmp_path: Path) -> None:
    port = _closed_port()
    config = tmp_path / "wedguard.toml"
    config.write_text(config_text(port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEDGUARD_")}
    env.update(secret_env(port))
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["WEDGUARD_RUN_DIR"] = str(tmp_path / "run")

    def wedguard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wedguard", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )

    outputs: list[str] = []
    for args in (("config", "check", str(config)), ("config", "check", "--json", str(config))):
        done = wedguard(*args)
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
    assert "WG_T_REDIS_URL" in outputs[0]  # the variable is named, its value is not

    child = [sys.executable, "-c", "import time; time.sleep(3)", *CHILD_ARGS]
    run = subprocess.Popen(
        [sys.executable, "-m", "wedguard", "run", "--report", "-c", str(config), "--", *child],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        guards = tmp_path / "run" / "guards"
        deadline = time.monotonic() + 15
        status_files: list[str] = []
        while not status_files and time.monotonic() < deadline:
            status_files = [p.read_text() for p in guards.glob("*.json")] if guards.is_dir() else []
            time.sleep(0.05)
        assert status_files, "the running guard wrote no status file"
        assert "--token ***" in status_files[0]  # the command is there, its secrets are not
        status = wedguard("status", "-c", str(config))
        status_json = wedguard("status", "--json", "-c", str(config))
        outputs += [status.stdout, status.stderr, status_json.stdout, status_json.stderr]
        assert "postgresql://backup:***@db.example.org/app" in status.stdout
        out, err = run.communicate(timeout=40)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == 0, err
    outputs += [out, err]
    assert "giving up" in err  # the webhook failed and said so, without its URL
    events = (tmp_path / "events.jsonl").read_text()
    assert '"kind":"process"' in events
    assert_clean(status_files, "the status file")
    assert_clean([events], "the JSON Lines events")
    assert_clean(outputs, "the command line's output")


def test_a_cli_error_that_quotes_a_dsn_hides_its_password(tmp_path: Path) -> None:
    """A DSN typed where a path belongs: the error names it, without the password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEDGUARD_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["WEDGUARD_RUN_DIR"] = str(tmp_path / "run")
    for source in (f"host=db password={DSN_PW}", f"postgresql://u:{DSN_PW}@db/app"):
        done = subprocess.run(
            [sys.executable, "-m", "wedguard", "copy", source, str(tmp_path / "dst")],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2
        assert "host=db" in done.stderr or "db/app" in done.stderr, done.stderr
        assert_clean([done.stdout, done.stderr], "a command line error")


def test_no_secret_in_reprs_logs_or_errors_of_a_built_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    port = _closed_port()
    for name, value in secret_env(port).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "wedguard.toml"
    path.write_text(config_text(port))
    caplog.set_level(logging.DEBUG)
    config = load_config(path)
    shown = [repr(config), str(config.to_dict()), config.render()]
    built = config.assemble()
    try:
        guard = built.guard
        shown += [repr(guard), repr(built), str(guard.decision().to_dict())]
        shown += [repr(sink) for sink in guard._sinks]
        with guard.session("photos") as session:
            session.throttle(10)
        done = guard.run([sys.executable, "-c", "pass", *CHILD_ARGS])
        shown += [repr(done.report), str(done.report), json.dumps(done.report.to_dict())]
        shown.append(repr(done))
    finally:
        built.close(flush_timeout=1.0)
    webhook = WebhookSink(url_env="WG_T_HOOK", secret_env="WG_T_SIGN", max_attempts=1, backoff=0.01)
    smtp = SmtpSink(
        "127.0.0.1",
        port,
        sender="a@example.org",
        recipients=["b@example.org"],
        starttls=False,
        username="backup",
        password_env="WG_T_SMTP",
        max_attempts=2,
        backoff=0.01,
    )
    alert = Alert("k", Severity.HIGH, "backup halted")
    for sink in (webhook, smtp):
        shown.append(repr(sink))
        with pytest.raises(DeliveryError) as caught:
            sink.send(alert)
        shown += [str(caught.value), repr(caught.value)]
        sink.emit(alert)
        sink.flush(10)
        sink.close()
    shown += [r.getMessage() for r in caplog.records]
    shown += [str(r.exc_info[1]) for r in caplog.records if r.exc_info and r.exc_info[1]]
    assert_clean(shown, "a repr, a log record or an error")


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{REDIS_PW}@127.0.0.1:notaport/0",
        f"redis://u:{REDIS_PW}@127.0.0.1:6379/x?db=bad",
        f"redis://127.0.0.1:6379/0?password={REDIS_PW}&socket_timeout=soon",
    ],
)
def test_a_redis_url_that_redis_py_refuses_is_shown_without_its_password(url: str) -> None:
    from wedguard.distributed.link import RedisLink

    with pytest.raises(ConfigError, match="url") as caught:
        RedisLink(url)
    assert REDIS_PW not in str(caught.value)
    assert caught.value.__cause__ is None  # redis-py's own message is not chained in


def test_redis_unreachable_log_has_no_password(caplog: pytest.LogCaptureFixture) -> None:
    from wedguard.distributed.link import RedisLink

    caplog.set_level(logging.WARNING, logger="wedguard.distributed")
    link = RedisLink(f"redis://:{REDIS_PW}@127.0.0.1:{_closed_port()}/0", timeout=0.2)
    assert link.call(lambda c: c.ping(), lambda: "fallback") == "fallback"
    messages = [r.getMessage() for r in caplog.records]
    assert any("unreachable" in m for m in messages)
    assert_clean([*messages, repr(link)], "the Redis link's log")
    link.close()


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f'[redis]\nurl = "redis://:{REDIS_PW}@cache:6379/0"\n', REDIS_PW),
        (f'[redis]\nurl = "redis://cache:6379/0?password={REDIS_PW}"\n', REDIS_PW),
        (
            f'[[sources]]\ntype = "database"\ndsn = "postgresql://u:{DSN_PW}@db/app"\n',
            DSN_PW,
        ),
        (
            f'[[sources]]\ntype = "database"\ndsn = "host=db password={DSN_PW}"\n',
            DSN_PW,
        ),
        (f'[[sources]]\ntype = "http"\nurl = "https://api/health?token={ARG_PW}"\n', ARG_PW),
    ],
)
def test_a_secret_written_in_the_file_is_refused_and_not_repeated(
    tmp_path: Path, text: str, secret: str
) -> None:
    path = tmp_path / "wedguard.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert secret not in str(caught.value)
    assert "***" in str(caught.value)


def test_a_redis_password_from_the_environment_is_hidden_when_the_url_is_bad(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WG_T_REDIS_URL", f"redis://:{REDIS_PW}@127.0.0.1:bad/0")
    path = tmp_path / "wedguard.toml"
    path.write_text('[redis]\nurl_env = "WG_T_REDIS_URL"\n')
    with pytest.raises(ConfigError) as caught:  # when the file is read, or at the latest
        load_config(path).coordinator()  # when the coordinator is built
    assert "port" in str(caught.value)
    assert REDIS_PW not in str(caught.value)


@pytest.mark.parametrize("bad", ["\n", " ", "\t", "é"])
def test_a_webhook_url_with_a_bad_character_is_refused_without_its_token(bad: str) -> None:
    url = f"https://hooks.example.org/hooks/{HOOK_TOKEN}{bad}x"
    for make in (WebhookSink, SlackSink):
        with pytest.raises(ConfigError, match="url") as caught:
            make(url)
        assert HOOK_TOKEN not in str(caught.value)


def test_post_failures_never_quote_the_url_path() -> None:
    """http.client refuses a path with a control character and quotes the path; the
    DeliveryError and its log line hide it (a URL built past the construction check)."""
    from wedguard.sinks._common import post

    url = Secret(f"http://127.0.0.1:{_closed_port()}/hooks/{HOOK_TOKEN}\nx")
    with pytest.raises(DeliveryError) as caught:
        post(url, b"{}", {}, timeout=1)
    assert "InvalidURL" in str(caught.value)
    assert HOOK_TOKEN not in str(caught.value)


def test_a_command_line_given_as_one_string_is_refused_without_its_password() -> None:
    from wedguard import Guard

    guard = Guard(rate="off", sources=[])
    try:
        with pytest.raises(ConfigError, match="argv") as caught:
            guard.run(f"pg_dump postgresql://u:{DSN_PW}@db/app")
        assert DSN_PW not in str(caught.value)
    finally:
        guard.close()


def test_a_password_protected_redis_shows_no_password(
    own_redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis asking for a password: a wrong one is logged as refused, the right one
    works; wedguard status talks to it; neither password appears anywhere."""
    from wedguard.distributed.link import RedisLink

    wrong = "WrongPw5k2Lx9"
    admin: Any = own_redis_server.client()
    admin.config_set("requirepass", REDIS_PW)
    admin.close()
    port = own_redis_server.port
    caplog.set_level(logging.DEBUG)
    refused = RedisLink(f"redis://:{wrong}@127.0.0.1:{port}/0", timeout=1.0)
    assert refused.call(lambda c: c.ping(), lambda: "fallback") == "fallback"
    accepted = RedisLink(f"redis://127.0.0.1:{port}/0?password={REDIS_PW}", timeout=1.0)
    assert accepted.call(lambda c: c.ping(), lambda: "fallback") is True
    shown = [repr(refused), repr(accepted), str(refused.last_error)]
    refused.close()
    accepted.close()
    config = tmp_path / "wedguard.toml"
    config.write_text('sources = []\n[redis]\nurl_env = "WG_T_REDIS_URL"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEDGUARD_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["WEDGUARD_RUN_DIR"] = str(tmp_path / "run")
    env["WG_T_REDIS_URL"] = f"redis://:{REDIS_PW}@127.0.0.1:{port}/0"
    for args in (("status",), ("status", "--json"), ("config", "check", str(config))):
        extra = () if args[0] == "config" else ("-c", str(config))
        done = subprocess.run(
            [sys.executable, "-m", "wedguard", *args, *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        shown += [done.stdout, done.stderr]
    assert any("fleet stop flag wedguard:stop: lowered" in text for text in shown)
    shown += [r.getMessage() for r in caplog.records]
    assert any("unreachable" in r.getMessage() for r in caplog.records)
    for text in shown:
        assert wrong not in text
    assert_clean(shown, "the output around a password-protected Redis")


@pytest.mark.parametrize("password", [Secret(""), ""])
def test_an_empty_smtp_password_is_refused_at_construction(password: Any) -> None:
    with pytest.raises(ConfigError, match=r"^password: '\*\*\*' is not valid"):
        SmtpSink(
            sender="a@example.org", recipients="b@example.org", username="u", password=password
        )


@pytest.mark.parametrize(
    "url",
    [
        f"https://probe:{ARG_PW}@api.example.org/health",
        f"https://api.example.org/health?token={ARG_PW}",
    ],
)
def test_probe_reprs_hide_the_url_secrets(url: str) -> None:
    from wedguard.sources import HttpProbe, ServiceLatencySource

    shown = [repr(HttpProbe(url)), repr(ServiceLatencySource(url))]
    assert_clean(shown, "a probe's repr")
    assert all("api.example.org" in text for text in shown)


@pytest.mark.parametrize(
    "url",
    [
        f"https://probe:{ARG_PW}@api.example.org:99999/health",  # a bad port
        f"https://probe:{ARG_PW}@[::1/health",  # urllib cannot parse it
        f"ftp://probe:{ARG_PW}@api.example.org/health",  # not http
    ],
)
def test_probe_url_errors_hide_the_url_secrets(url: str) -> None:
    from wedguard.sources import HttpProbe

    with pytest.raises(ConfigError, match="url") as caught:
        HttpProbe(url)
    assert_clean([str(caught.value)], "a probe's ConfigError")
