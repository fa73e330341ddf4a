"""wedguard.config: a wedguard.toml becomes a validated Config and a Guard."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wedguard as wg
from wedguard.config import Config, load, load_config
from wedguard.testing import FakeClock

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "wedguard.example.toml"


def write(tmp_path: Path, text: str, name: str = "wedguard.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(wg.ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_the_documented_example_loads_and_builds_a_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/wedguard.example.toml is valid, and every section of it takes effect."""
    monkeypatch.setenv("HOME", str(tmp_path))  # its history and event log live in ~
    config = load_config(EXAMPLE)
    assert config.guard.rate == 50e6
    assert config.guard.max_concurrent == 2
    assert config.calendar is not None
    assert [r.name for r in config.calendar.rules] == [
        "peak hours",
        "wedding Saturdays",
        "Christmas",
    ]
    assert config.thresholds.api_latency == pytest.approx(0.05)
    assert config.thresholds.backup_cpu == 30.0
    assert [s.type for s in config.sources] == ["system", "process", "http"]
    assert [s.type for s in config.sinks] == ["logging", "jsonl"]
    assert config.history is not None
    assert config.history["retention"] == 7 * 86400
    overrides: dict[str, Any] = {"stop_file": str(tmp_path / "stop")}
    built = config.assemble(clock=FakeClock(), **overrides)
    try:
        assert built.guard.rate == 50e6
        assert built.guard.max_concurrent == 2
        assert built.history is not None
    finally:
        built.close()


def test_load_returns_a_guard_that_honours_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'sources = []\n[guard]\nrate = "2MB/s"\nmax_concurrent = 1\n'
        '[calendar]\ntz = "UTC"\nrules = "Mon-Sun 00:00-24:00 peak 1MB/s"\n',
    )
    clock = FakeClock()
    guard = load(path, clock=clock, sinks=[])
    d = guard.decision()
    assert d.level is wg.Level.PEAK
    assert d.rate == 1e6
    assert guard.max_concurrent == 1
    with guard.session("t") as s:
        waited = [s.throttle(500_000) for _ in range(6)]
    assert sum(waited) >= 2.0  # 3 MB at the calendar's 1 MB/s, after at most 1 s of burst


def test_missing_sections_take_the_library_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.guard == wedguard_defaults()
    assert config.calendar == wg.PeakHourCalendar.default(tz="UTC")
    assert config.thresholds == wg.Thresholds()
    assert config.controller == {"kind": "aimd"}
    assert [s.type for s in config.sources] == ["system"]
    assert [(s.type, s.alerts) for s in config.sinks] == [("logging", None)]
    assert config.breaker == {"failure_threshold": 3, "recovery_timeout": 300.0}
    assert config.history is None


def wedguard_defaults() -> Any:
    from wedguard.config import GuardSettings

    return GuardSettings()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[guard]\nrate = "10 parsecs"\n',
            "wedguard.toml: guard.rate: '10 parsecs' is not valid; expected a rate such as",
        ),
        ("[guard]\nrat = 1\n", "wedguard.toml: guard.rat: 1 is not valid; expected a known key"),
        (
            "[gaurd]\nrate = 1\n",
            "wedguard.toml: gaurd: {'rate': 1} is not valid; expected a known section",
        ),
        (
            "[guard]\nmax_concurrent = 0\n",
            "guard.max_concurrent: 0 is not valid; expected a whole number >= 1",
        ),
        ("[guard]\nmax_concurrent = true\n", "guard.max_concurrent: True is not valid"),
        (
            '[guard]\nsample_interval = "soon"\n',
            "guard.sample_interval: 'soon' is not valid; expected a duration",
        ),
        (
            '[calendar]\nrules = "Mon 25:00-26:00 peak"\n',
            "calendar.rules: line 1: '25:00' is not valid",
        ),
        ('[calendar]\ntz = "Mars/Olympus"\n', "calendar.tz: 'Mars/Olympus' is not valid"),
        ('[calendar]\nrulez = ""\n', "calendar.rulez"),
        ('[calendar]\npreset = "weekly"\n', "calendar.preset: 'weekly' is not valid"),
        (
            '[calendar]\npreset = "none"\ntz = "UTC"\n',
            "calendar.tz: 'UTC' is not valid; expected a key the 'none' preset takes",
        ),
        ('[thresholds]\napi_latency = "fast"\n', "thresholds.api_latency: 'fast' is not valid"),
        (
            "[thresholds]\nbackup_cpus = 30\n",
            "thresholds.backup_cpus: 30 is not valid; expected a known key",
        ),
        ("[thresholds.per_level.lunch]\napi_latency = 0.1\n", "thresholds.per_level.lunch"),
        (
            '[controller]\nkind = "pid"\n',
            "controller.kind: 'pid' is not valid; expected 'aimd' or 'ledbat'",
        ),
        ("[controller]\ndecrease = 3\n", "controller.decrease: 3 is not valid"),
        (
            '[controller]\nkind = "ledbat"\nincrease = 1\n',
            "controller.increase: 1 is not valid; expected a parameter of the ledbat controller",
        ),
        (
            "[breaker]\nfailure_threshold = 0\n",
            "breaker.failure_threshold: 0 is not valid; expected a whole number >= 1",
        ),
        (
            '[breaker]\nrecovery_timeout = "later"\n',
            "breaker.recovery_timeout: 'later' is not valid",
        ),
        ('[alerts]\ngroup_wait = "a while"\n', "alerts.group_wait: 'a while' is not valid"),
        ("[alerts]\nwait = 1\n", "alerts.wait: 1 is not valid; expected a known key"),
        (
            '[history]\nretention = "7d"\n',
            "history.path: None is not valid; expected the path of the history database",
        ),
        (
            '[history]\npath = "h.db"\nretention = "a week"\n',
            "history.retention: 'a week' is not valid",
        ),
        (
            '[[sources]]\ntype = "snmp"\n',
            "sources[0].type: 'snmp' is not valid; expected one of system, process",
        ),
        (
            '[[sources]]\ntype = "http"\n',
            "sources[0].url: None is not valid; expected a url for a http source",
        ),
        (
            '[[sources]]\ntype = "http"\nurl = "ftp://x"\n',
            "sources[0].url: 'ftp://x' is not valid; expected an http:// or https:// URL",
        ),
        (
            '[[sources]]\ntype = "http"\nurl = "http://a:hunter2@x/"\n',
            "sources[0].url: 'http://a:***@x/' is not valid",
        ),
        (
            '[[sources]]\ntype = "system"\ndisks = "yes"\n',
            "sources[0].disks: 'yes' is not valid; expected true or false",
        ),
        ('sources = "system"\n', "sources: 'system' is not valid; expected an array of tables"),
        ('[[sinks]]\ntype = "pager"\n', "sinks[0].type: 'pager' is not valid"),
        (
            '[[sinks]]\ntype = "slack"\nurl = "https://hooks.slack.com/T0/B0/XYZ"\n',
            "sinks[0].url: '***' is not valid; expected url_env naming an environment variable",
        ),
        (
            '[[sinks]]\ntype = "slack"\n',
            "sinks[0].url_env: None is not valid; expected a url_env for a slack sink",
        ),
        (
            '[[sinks]]\ntype = "slack"\nurl_env = "NOT-A-NAME"\n',
            "sinks[0].url_env: 'NOT-A-NAME' is not valid; expected the name of an environment variable",
        ),
        (
            '[[sinks]]\ntype = "jsonl"\npath = "e.jsonl"\nalerts = "urgent"\n',
            "sinks[0].alerts: 'urgent' is not valid; expected a severity",
        ),
        ('[[sinks]]\ntype = "smtp"\nsender = "a@b"\n', "sinks[0].recipients: None is not valid"),
        (
            '[[sinks]]\ntype = "smtp"\nsender = "a@b"\nrecipients = ["c@d"]\npassword = "x"\n',
            "sinks[0].password: '***' is not valid; expected password_env",
        ),
        ("[guard\n", "wedguard.toml: "),
        (
            '[[sinks]]\ntype = "smtp"\nsender = "a@b"\nrecipients = ["c@d"]\nport = 99999\n',
            "sinks[0].port: 99999 is not valid",
        ),
        (
            '[[sources]]\ntype = "http"\nurl = "http://x/"\nmethod = "GE T"\n',
            "sources[0].method: 'GE T' is not valid",
        ),
        (
            '[[sources]]\ntype = "pressure"\nsystem = false\n',
            "sources[0].system: False is not valid",
        ),
    ],
)
def test_every_bad_key_or_value_names_the_file_the_key_and_what_was_expected(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert expected in error_of(tmp_path, text)


def test_a_secret_never_appears_in_an_error(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        '[[sinks]]\ntype = "webhook"\nurl_env = "HOOK"\nsecret = "s3cret-value"\n',
    )
    assert "s3cret-value" not in message
    assert "sinks[0].secret" in message


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(wg.ConfigError, match="an existing configuration file"):
        load_config(tmp_path / "nope.toml")


def test_secrets_come_only_from_the_environment_and_are_never_rendered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        '[[sinks]]\ntype = "slack"\nurl_env = "TEST_SLACK_URL"\n'
        '[[sinks]]\ntype = "webhook"\nurl_env = "TEST_HOOK_URL"\nsecret_env = "TEST_HOOK_KEY"\n'
    )
    path = write(tmp_path, text)
    monkeypatch.delenv("TEST_SLACK_URL", raising=False)
    with pytest.raises(wg.ConfigError, match=r"sinks\[0\]\.url_env: 'TEST_SLACK_URL'"):
        load_config(path)
    assert load_config(path, env=False).secrets() == {
        "TEST_SLACK_URL": False,
        "TEST_HOOK_URL": False,
        "TEST_HOOK_KEY": False,
    }
    monkeypatch.setenv("TEST_SLACK_URL", "https://hooks.slack.com/services/T0/B0/supersecret")
    monkeypatch.setenv("TEST_HOOK_URL", "https://example.org/hook/tokentoken")
    monkeypatch.setenv("TEST_HOOK_KEY", "whsec_abcdef")
    config = load_config(path)
    rendered = config.render()
    for secret in ("supersecret", "tokentoken", "whsec_abcdef"):
        assert secret not in rendered
        assert secret not in repr(config)
    assert 'url_env = "TEST_SLACK_URL"' in rendered
    # slack is an alert route (HIGH) by default; the webhook hears every event
    assert [(s.type, s.alerts) for s in config.sinks] == [
        ("slack", wg.Severity.HIGH),
        ("webhook", None),
    ]
    built = config.assemble(clock=FakeClock(), sources=[])
    try:
        assert built.dispatcher is not None
        for secret in ("supersecret", "tokentoken", "whsec_abcdef"):
            assert secret not in repr(built.guard)
    finally:
        built.close(flush_timeout=0.5)


@pytest.mark.parametrize(
    "extra",
    [
        "",
        '[alerts]\nescalate_after = "off"\ngroup_by = []\nmax_attempts = 3\n',
        '[guard]\nslot_timeout = "10m"\nops_rate = "200/s"\nmax_concurrent = "off"\n',
    ],
)
def test_edge_values_render_and_read_back(tmp_path: Path, extra: str) -> None:
    config = load_config(write(tmp_path, "sources = []\n" + extra))
    again = Config.from_dict(tomllib.loads(config.render()), path="again.toml")
    assert again.render() == config.render()
    assert again.alerts == config.alerts
    assert again.guard == config.guard


def test_the_rendering_reads_back_as_the_same_configuration() -> None:
    """render() is TOML that loads to the same effective configuration."""
    config = load_config(EXAMPLE)
    again = Config.from_dict(tomllib.loads(config.render()), path="rendered.toml")
    assert again.render() == config.render()
    assert again.calendar == config.calendar
    assert again.thresholds == config.thresholds
    assert again.guard == config.guard


@given(
    rate=st.one_of(
        st.sampled_from(["off", "10Mbit/s", "512KiB/s", "1.5 MB/s", "3GB/s"]),
        st.floats(min_value=1.0, max_value=1e12, allow_nan=False),
    ),
    concurrent=st.one_of(st.just("off"), st.integers(min_value=1, max_value=64)),
    interval=st.floats(min_value=0.001, max_value=86400.0),
)
def test_guard_settings_round_trip_through_the_rendering(
    rate: Any, concurrent: Any, interval: float
) -> None:
    """Property: any valid [guard] table renders to text that reads back the same."""
    data = {"guard": {"rate": rate, "max_concurrent": concurrent, "sample_interval": interval}}
    config = Config.from_dict(data, path="p.toml")
    again = Config.from_dict(tomllib.loads(config.render()), path="p.toml")
    expected = wg.parse_rate(rate)
    assert again.guard.rate == pytest.approx(expected, rel=1e-2) or (
        math.isinf(expected) and math.isinf(again.guard.rate)
    )
    assert again.guard.max_concurrent == config.guard.max_concurrent
    assert again.guard.sample_interval == pytest.approx(interval, rel=1e-2, abs=1e-3)


def test_presets_and_percentages(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[calendar]\npreset = "wedding_platform"\ntz = "Europe/London"\n'
            'event_dates = ["2026-06-13"]\n'
            '[thresholds]\napi_latency = "10%"\nbackup_cpu = "50%"\nbackup_network = "off"\n',
        )
    )
    assert config.calendar == wg.PeakHourCalendar.wedding_platform(
        ["2026-06-13"], tz="Europe/London"
    )
    assert config.thresholds.api_latency == pytest.approx(0.10)
    assert config.thresholds.backup_cpu == 50.0
    assert config.thresholds.backup_network is None
    assert load_config(write(tmp_path, '[calendar]\npreset = "none"\n')).calendar is None


def test_controller_kind_and_parameters(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, '[controller]\nkind = "ledbat"\ntarget = 0.8\nmin_dwell = 5.0\n')
    )
    assert config.controller == {"kind": "ledbat", "target": 0.8, "min_dwell": 5.0}
    built = config.assemble(clock=FakeClock(), sources=[], sinks=[])
    built.close()


def test_sources_of_every_type_are_built(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[[sources]]\ntype = "system"\ncgroup = false\n'
            '[[sources]]\ntype = "process"\ninclude_children = false\n'
            '[[sources]]\ntype = "http"\nurl = "http://127.0.0.1:9/health"\ntimeout = 0.2\n'
            '[[sources]]\ntype = "service_latency"\nurl = "http://127.0.0.1:9/metrics"\n'
            'quantile = 0.99\nlabels = { route = "/api" }\n'
            '[[sources]]\ntype = "pressure"\nresources = ["cpu", "io"]\n',
        )
    )
    from wedguard import sources

    built = config.assemble(clock=FakeClock(), sinks=[])
    try:
        kinds = [type(s._source).__name__ if hasattr(s, "_source") else type(s).__name__
                 for s in built.guard._sources]  # fmt: skip
        assert kinds == [
            sources.SystemSource.__name__,
            sources.ProcessSource.__name__,
            sources.HttpProbe.__name__,
            sources.ServiceLatencySource.__name__,
            sources.PressureSource.__name__,
        ]
    finally:
        built.close()


def test_a_database_probe_needs_its_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without psycopg/psycopg2 (or pymysql) the error names the missing driver."""
    for name in ("psycopg", "psycopg2", "pymysql"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails
    message = error_of(
        tmp_path, '[[sources]]\ntype = "database"\ndsn = "postgresql://monitor@db/app"\n'
    )
    assert "sources[0].type" in message
    assert "psycopg or psycopg2 is missing" in message
    message = error_of(tmp_path, '[[sources]]\ntype = "database"\ndsn = "mysql://monitor@db/app"\n')
    assert "pymysql is missing" in message
    message = error_of(
        tmp_path, '[[sources]]\ntype = "database"\ndsn = "postgresql://u:pw123@db/app"\n'
    )
    assert "pw123" not in message
    assert "a DSN without a password" in message
    message = error_of(tmp_path, '[[sources]]\ntype = "database"\ndsn = "oracle://u@db/app"\n')
    assert "a postgresql://, postgres:// or mysql:// DSN" in message


def test_a_database_probe_measures_select_1_with_the_installed_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a driver present the probe connects from the DSN in the environment and
    reports the query's latency as db.latency_s."""
    calls: list[tuple[str, dict[str, Any]]] = []

    class Cursor:
        def execute(self, query: str) -> None:
            calls.append(("execute", {"query": query}))

        def fetchall(self) -> list[tuple[int]]:
            return [(1,)]

        def close(self) -> None:
            pass

    class Connection:
        autocommit = False

        def cursor(self) -> Cursor:
            return Cursor()

        def close(self) -> None:
            pass

    def connect(*args: Any, **kwargs: Any) -> Connection:
        calls.append(("connect", {"args": args, **kwargs}))
        return Connection()

    fake = types.ModuleType("psycopg")
    fake.connect = connect  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "psycopg", fake)
    monkeypatch.setenv("TEST_DB_DSN", "postgresql://monitor@127.0.0.1/app")
    monkeypatch.setenv("TEST_DB_PASSWORD", "pg-secret")
    config = load_config(
        write(
            tmp_path,
            '[[sources]]\ntype = "database"\ndsn_env = "TEST_DB_DSN"\n'
            'password_env = "TEST_DB_PASSWORD"\ntimeout = 1.0\n',
        )
    )
    assert "pg-secret" not in config.render()
    built = config.assemble(clock=FakeClock(), sinks=[])
    try:
        (probe,) = built.guard._sources
        sample = probe.sample()
    finally:
        built.close()
    assert set(sample) == {"db.latency_s"}
    assert calls[0][0] == "connect"
    assert calls[0][1]["args"] == ("postgresql://monitor@127.0.0.1/app",)
    assert calls[0][1]["password"] == "pg-secret"
    assert calls[1] == ("execute", {"query": "SELECT 1"})
    assert "pg-secret" not in repr(probe)


def test_history_records_session_reports(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    config = load_config(
        write(tmp_path, f'sources = []\n[calendar]\npreset = "none"\n[history]\npath = "{db}"\n')
    )
    with config.assemble(clock=FakeClock(), sinks=[]) as built:
        with built.guard.session("nightly") as s:
            s.throttle(1000)
        built.guard.flush()
        assert built.history is not None
        assert built.history.store is not None
        assert [r.name for r in built.history.store.sessions()] == ["nightly"]


@pytest.mark.parametrize("name", ["wedguard.config", "wedguard.cli", "wedguard.demo"])
def test_the_docstring_examples_run(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_a_control_socket_naming_a_directory_is_refused_by_the_file(tmp_path: Path) -> None:
    """``control_socket = "/"`` can never be bound: the file is refused as it is read,
    naming the key, not when the guard is built."""
    for value in ("/", f"{tmp_path}/"):
        with pytest.raises(wg.ConfigError) as info:
            load_config(write(tmp_path, f'sources = []\n[guard]\ncontrol_socket = "{value}"\n'))
        assert "guard.control_socket" in info.value.field
        assert "naming a file, not a directory" in str(info.value)


def test_a_control_socket_from_the_file(tmp_path: Path) -> None:
    from wedguard.runtime.control_socket import send_command

    sock = tmp_path / "wg.sock"
    config = load_config(
        write(
            tmp_path,
            f'sources = []\n[calendar]\npreset = "none"\n[guard]\ncontrol_socket = "{sock}"\n',
        )
    )
    assert f'control_socket = "{sock}"' in config.render()
    with config.assemble(sinks=[]) as built:
        assert send_command(sock, "rate=7MB/s") == "ok: rate 7 MB/s"
        assert built.guard.rate == 7e6
    assert not sock.exists()


def test_session_priority_from_the_file(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            'sources = []\n[calendar]\npreset = "none"\n[guard]\nnice = 19\nionice = true\n',
        )
    )
    assert (config.guard.nice, config.guard.ionice) == (19, True)
    rendered = config.render()
    assert "nice = 19" in rendered
    assert "ionice = true" in rendered
    with config.assemble(sinks=[]) as built:
        assert (built.guard.nice, built.guard.ionice) == (19, True)
    for bad in ("nice = 20", "nice = -1", 'nice = "low"', 'ionice = "yes"'):
        with pytest.raises(wg.ConfigError) as info:
            load_config(write(tmp_path, f"sources = []\n[guard]\n{bad}\n"))
        assert "guard." + bad.split(" ")[0] in str(info.value)


@given(
    section=st.sampled_from(["guard", "breaker", "alerts", "history", "thresholds", "controller"]),
    key=st.from_regex(r"[a-z][a-z_]{2,12}", fullmatch=True),
)
def test_any_unknown_key_names_the_file_and_the_key_path(section: str, key: str) -> None:
    """Property: a key no section knows is an error that names the file and
    ``section.key`` (never a silent default)."""
    known = {
        "guard": {"rate", "max_concurrent", "stop_file", "ops_rate", "sample_interval",
                  "stop_check_interval", "slot_timeout", "control_socket", "nice", "ionice"},
        "breaker": {"failure_threshold", "recovery_timeout", "half_open_max_calls",
                    "success_threshold"},
        "alerts": {"group_by", "group_wait", "group_interval", "repeat_interval",
                   "escalate_after", "spool", "max_attempts", "backoff", "backoff_max"},
        "history": {"path", "retention", "session_retention"},
        "thresholds": {"api_latency", "db_latency", "backup_cpu", "backup_memory",
                       "backup_network", "relative", "absolute", "critical", "per_level"},
        "controller": {"kind", "floor", "increase", "decrease", "min_dwell", "proportional",
                       "margin", "ok_needed", "initial", "max_rate"},
    }[section]  # fmt: skip
    if key in known:
        return
    table: dict[str, Any] = {key: 1}
    if section == "history":
        table["path"] = "h.db"
    with pytest.raises(wg.ConfigError) as info:
        Config.from_dict({"sources": [], section: table}, path="site/wedguard.toml")
    assert str(info.value).startswith(f"site/wedguard.toml: {section}.{key}: 1 is not valid")


def test_a_calendar_with_only_a_zone_is_the_default_peak_hours_there(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[calendar]\ntz = "Europe/London"\n'))
    assert config.calendar == wg.PeakHourCalendar.default(tz="Europe/London")
    empty = load_config(write(tmp_path, '[calendar]\ntz = "UTC"\nrules = ""\n'))
    assert empty.calendar is not None
    assert empty.calendar.rules == ()


_VARIANTS: dict[str, list[Any]] = {
    "guard": [
        {},
        {"rate": "10Mbit/s", "max_concurrent": 1, "stop_file": "/tmp/wg.stop"},
        {"rate": "off", "max_concurrent": "off", "ops_rate": 50, "slot_timeout": "90s"},
        {"sample_interval": 0.25, "stop_check_interval": "50ms"},
    ],
    "calendar": [
        {"preset": "none"},
        {"tz": "Europe/London"},
        {"preset": "wedding_platform", "event_dates": ["2026-06-13"], "tz": "Europe/Paris"},
        {
            "tz": "America/New_York",
            "rules": "Mon-Fri 06:00-22:00 peak 5MB/s cpu=20%\n"
            'May-Oct Sat blackout name="weddings"\n22:00-02:00 open',
        },
        {"rclone": "08:00,512k 12:00,10M 23:00,off"},
    ],
    "thresholds": [
        {},
        {"api_latency": "10%", "db_latency": "off", "backup_memory": "1GB"},
        {"backup_cpu": 50, "critical": 4.0, "per_level": {"peak": {"api_latency": 0.02}}},
        {"absolute": {"pressure.cpu.some_percent": 20.0}, "relative": {"api.latency_s.p99": 0.1}},
    ],
    "controller": [
        {},
        {"kind": "aimd", "floor": "64KB/s", "decrease": 0.7, "min_dwell": 5.0},
        {"kind": "ledbat", "target": 0.8, "gain": 0.3},
    ],
    "breaker": [{}, {"failure_threshold": 5, "recovery_timeout": "10m"}],
    "alerts": [{}, {"group_wait": "10s", "repeat_interval": "1h", "escalate_after": "off"}],
    "history": [None, {"path": "/tmp/h.db", "retention": "30d"}],
    "sources": [
        None,
        [],
        [{"type": "system", "disks": False}, {"type": "http", "url": "http://127.0.0.1:9/"}],
        [{"type": "pressure", "resources": ["cpu"]}, {"type": "process", "prefix": "bk"}],
    ],
    "sinks": [
        None,
        [],
        [{"type": "jsonl", "path": "/tmp/e.jsonl", "max_bytes": "1MB"}],
        [
            {"type": "logging", "logger": "backup", "alerts": "medium"},
            {"type": "prometheus", "namespace": "nightly"},
        ],
    ],
}


@given(st.fixed_dictionaries({k: st.sampled_from(v) for k, v in _VARIANTS.items()}))
def test_any_valid_configuration_renders_to_itself(choice: dict[str, Any]) -> None:
    """Property: render() of any valid configuration is TOML that reads back to the
    same effective configuration (and the same rendering)."""
    data = {k: v for k, v in choice.items() if v is not None}
    config = Config.from_dict(data, path="p.toml")
    again = Config.from_dict(tomllib.loads(config.render()), path="p.toml")
    assert again.render() == config.render()
    assert again.guard == config.guard
    assert again.calendar == config.calendar
    assert again.thresholds == config.thresholds
    assert again.controller == config.controller
    assert again.sources == config.sources
    assert again.sinks == config.sinks
    assert again.alerts == config.alerts
    assert again.history == config.history
    assert again.breaker == config.breaker


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[redis]\nprefix = "x"\n',
            "redis.url: None is not valid; expected exactly one of url or url_env",
        ),
        (
            '[redis]\nurl = "redis://h/0"\nurl_env = "R"\n',
            "redis.url: None is not valid; expected exactly one",
        ),
        (
            '[redis]\nurl = "redis://:s3cret@h/0"\n',
            "redis.url: 'redis://:***@h/0' is not valid; expected a URL without a password",
        ),
        (
            '[redis]\nurl = "http://h/0"\n',
            "redis.url: 'http://h/0' is not valid; expected a redis://",
        ),
        (
            '[redis]\nurl = "redis://h/0"\nshare = 1\n',
            "redis.share: 1 is not valid; expected a known key",
        ),
        (
            '[redis]\nurl = "redis://h/0"\nfallback_share = 2\n',
            "redis.fallback_share: 2 is not valid",
        ),
        (
            '[redis]\nurl_env = "TEST_WEDGUARD_NO_REDIS_URL"\n',
            "redis.url_env: 'TEST_WEDGUARD_NO_REDIS_URL' is not valid",
        ),
    ],
)
def test_redis_section_errors(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert expected in message
    assert "s3cret" not in message


def test_redis_needs_redis_py(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    message = error_of(tmp_path, '[redis]\nurl = "redis://h/0"\n')
    assert "redis: 'redis' is not valid; expected redis-py installed" in message


def test_a_guard_from_a_file_learns_the_baseline_of_its_latency_probe(tmp_path: Path) -> None:
    """A guard built from a file (``wedguard.config.load``, ``wedguard pipe --config``)
    judges the file's latency limit: it learns a baseline before the first byte, as a
    guard that builds its own analyser does, instead of passing latency unjudged."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = tmp_path / "wedguard.toml"
    path.write_text(
        '[calendar]\npreset = "none"\n[[sources]]\ntype = "http"\n'
        f'url = "http://127.0.0.1:{server.server_address[1]}/health"\n'
        'metric = "api.latency_s"\n'
    )
    clock = FakeClock()
    guard = load(path, clock=clock, sinks=[])
    try:
        with guard.session("photos") as s:
            waited = s.throttle(1_000_000)  # 5 samples at 1 s before the first byte
            decision = guard.decision()
    finally:
        guard.close()
        server.shutdown()
        server.server_close()
    assert waited == pytest.approx(4.0)
    assert "api.latency_s: no baseline yet, not judged" not in decision.reasons
    assert s.report().wait_seconds["impact"] >= 4.0


@pytest.mark.parametrize(("value", "held"), [("90s", 90.0), ("forever", None), (None, 1800.0)])
def test_guard_max_hold_from_the_file(
    tmp_path: Path, value: str | None, held: float | None
) -> None:
    """``[guard] max_hold``: how long a session is held back for production's sake
    before it ends with HoldTimeout (30 min when the file says nothing, as Guard())."""
    from wedguard.testing import ScriptedSource

    text = '[calendar]\npreset = "none"\n[guard]\nrate = "10MB/s"\n'
    if value is not None:
        text += f'max_hold = "{value}"\n'
    config = load_config(write(tmp_path, text))
    assert config.guard.max_hold == held
    again = Config.from_dict(tomllib.loads(config.render()), path="rendered.toml")
    assert again.guard.max_hold == held
    if held is None:
        return
    clock = FakeClock()
    guard = load(
        tmp_path / "wedguard.toml",
        clock=clock,
        sinks=[],
        sources=[ScriptedSource([{"api.latency_s.error": 1.0}])],
    )

    def backup() -> None:
        with guard.session("photos") as s:
            while clock.monotonic() < 4 * 3600:
                s.throttle(100_000)

    with pytest.raises(wg.HoldTimeout):
        backup()
    assert held <= clock.monotonic() <= held + 10


@pytest.mark.parametrize("value", ['"soon"', '"0s"', '"40d"', "-5"])
def test_guard_max_hold_refuses_nonsense(tmp_path: Path, value: str) -> None:
    message = error_of(tmp_path, f"[guard]\nmax_hold = {value}\n")
    assert "guard.max_hold" in message
    assert value.strip('"') in message
