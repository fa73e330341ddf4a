"""Fuzzing wedguard.toml: any document is either a working configuration or one
ConfigError that names the file and the key, never a traceback.

Documents are generated over the real schema (every section and key the loader
knows), with values that are right, of the wrong type, out of range, huge, NaN or
infinite, empty, with NUL characters, and keys nobody knows. Each example injects
faults into a valid document, so an error must name the key path of a fault; a
document that is accepted must build its guard.

The example counts are the constants below; ``docs/reliability.md`` quotes them
(``test_the_reliability_page_quotes_the_counts`` in ``tests/test_fuzz_cli.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import wedguard as wg
from wedguard.config import Config, load_config
from wedguard.testing import FakeClock

#: examples per property (see docs/reliability.md, "Bad input")
DOCUMENTS = 300
FILES = 150
BYTES = 150

_TMP = Path(tempfile.mkdtemp(prefix="wedguard-fuzz-config-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
T = TypeVar("T")

# -- values ------------------------------------------------------------------------------

HUGE = st.sampled_from([10**400, -(10**400), 2**63, 2**64 + 1, -(2**63) - 1])
SPECIAL_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, 1e-300, 1e300, -0.0, 5e-324])
NASTY_TEXT = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\udcff", "nan", "inf", "-1", "1e400", "off", "10 parsecs",
     "\n", "é", "/", "~", "x" * 300]
)  # fmt: skip
WRONG = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    HUGE,
    SPECIAL_FLOATS,
    st.floats(allow_nan=True, allow_infinity=True),
    NASTY_TEXT,
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["a", "rate"]), st.integers(), max_size=1),
)
RATES = st.sampled_from(["10MB/s", "10Mbit/s", "512KiB/s", "off", "1.5 MB/s", 1000, 2.5e6])
DURATIONS = st.sampled_from(["30s", "5m", "1h30m", "250ms", 2, 0.5, "1d"])


@contextlib.contextmanager
def in_tmp() -> Iterator[None]:
    """Run in the fuzz directory: a relative path that is accepted lands there."""
    cwd = os.getcwd()
    os.chdir(_TMP)
    try:
        yield
    finally:
        os.chdir(cwd)


def attempt(make: Callable[[], T]) -> tuple[T | None, wg.ConfigError | None]:
    """``make()`` in the fuzz directory: (its result, None) or (None, the ConfigError)."""
    with in_tmp():
        try:
            return make(), None
        except wg.ConfigError as exc:
            return None, exc


def _tmp_path(name: str) -> str:
    return str(_TMP / name)


# the valid values of each key: what a document is built from before faults go in
GUARD: dict[str, st.SearchStrategy[Any]] = {
    "rate": RATES,
    "max_concurrent": st.one_of(st.integers(1, 8), st.just("off")),
    "stop_file": st.just(_tmp_path("stop")),
    "ops_rate": st.sampled_from([10, "100/min", "off"]),
    "sample_interval": DURATIONS,
    "stop_check_interval": st.sampled_from(["100ms", 0.05, "1s"]),
    "slot_timeout": st.sampled_from(["forever", "5m", 0, 30]),
    "control_socket": st.just(_tmp_path("control.sock")),
    "nice": st.integers(0, 19),
    "ionice": st.booleans(),
}
CALENDAR: dict[str, st.SearchStrategy[Any]] = {
    "tz": st.sampled_from(["UTC", "Europe/London", "America/New_York"]),
    "rules": st.sampled_from(
        ["Mon-Fri 06:00-22:00 peak 10Mbit/s", "Sat blackout\n22:00-02:00 peak 1MB/s", ""]
    ),
    "default": st.sampled_from(["open", "peak", "blackout"]),
}
THRESHOLDS: dict[str, st.SearchStrategy[Any]] = {
    "api_latency": st.sampled_from(["5%", 0.05, "off"]),
    "db_latency": st.sampled_from(["20%", 0.2]),
    "backup_cpu": st.sampled_from(["30%", 30]),
    "backup_memory": st.sampled_from(["500MB", 10**8]),
    "backup_network": st.sampled_from(["10Mbit/s", "off"]),
    "critical": st.sampled_from([2.0, 3]),
}
CONTROLLER: dict[str, st.SearchStrategy[Any]] = {"kind": st.sampled_from(["aimd", "ledbat"])}
BREAKER: dict[str, st.SearchStrategy[Any]] = {
    "failure_threshold": st.integers(1, 10),
    "recovery_timeout": DURATIONS.filter(lambda d: d not in (0, 0.5)),
    "half_open_max_calls": st.integers(1, 3),
    "success_threshold": st.integers(1, 3),
}
ALERTS: dict[str, st.SearchStrategy[Any]] = {
    "group_wait": DURATIONS,
    "group_interval": DURATIONS,
    "repeat_interval": st.sampled_from(["4h", 60]),
    "escalate_after": st.sampled_from(["off", "1h"]),
    "max_attempts": st.integers(1, 5),
    "backoff": st.sampled_from(["5s", 1]),
    "backoff_max": st.sampled_from(["10m", 600]),
    "spool": st.just(_tmp_path("alerts.spool")),
}
HISTORY: dict[str, st.SearchStrategy[Any]] = {
    "path": st.just(_tmp_path("history.db")),
    "retention": st.sampled_from(["7d", "1h"]),
}
SECTIONS = {
    "guard": GUARD,
    "calendar": CALENDAR,
    "thresholds": THRESHOLDS,
    "controller": CONTROLLER,
    "breaker": BREAKER,
    "alerts": ALERTS,
    "history": HISTORY,
}
SOURCES: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "system": {"disks": st.booleans(), "network": st.booleans()},
    "process": {"pid": st.just(os.getpid()), "include_children": st.booleans()},
    "pressure": {"system": st.just(True), "resources": st.just(["cpu", "io"])},
    "http": {
        "url": st.just("http://127.0.0.1:9/health"),
        "timeout": st.sampled_from([1, 2.5]),
        "percentile": st.sampled_from([0.5, 0.95]),
    },
}
SINKS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "logging": {"logger": st.just("wedguard.fuzz")},
    "jsonl": {"path": st.just(_tmp_path("events.jsonl")), "max_bytes": st.just("1MB")},
    "smtp": {
        "host": st.just("127.0.0.1"),
        "port": st.sampled_from([25, 587]),
        "sender": st.just("backup@example.org"),
        "recipients": st.just(["ops@example.org"]),
        "ssl": st.booleans(),
        "timeout": st.sampled_from([5, 10.0]),
    },
    "prometheus": {"namespace": st.just("fuzz"), "port": st.sampled_from([0, 9464])},
}
REQUIRED = {"jsonl": ("path",), "smtp": ("sender", "recipients"), "http": ("url",)}


@st.composite
def documents(draw: st.DrawFn) -> tuple[dict[str, Any], list[str], bool]:
    """A valid document, then faults: (document, the key paths of the faults, whether a
    fault that no key takes is still in the document)."""
    doc: dict[str, Any] = {}
    for section, keys in SECTIONS.items():
        if draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from(sorted(keys)), unique=True, max_size=4))
            if section == "history":
                chosen = sorted({"path", *chosen})
            doc[section] = {k: draw(keys[k]) for k in chosen}
    if draw(st.booleans()):
        doc["sources"] = []
        for kind in draw(st.lists(st.sampled_from(sorted(SOURCES)), max_size=2)):
            keys = SOURCES[kind]
            chosen = set(draw(st.lists(st.sampled_from(sorted(keys)), max_size=3)))
            chosen |= set(REQUIRED.get(kind, ()))
            doc["sources"].append({"type": kind, **{k: draw(keys[k]) for k in sorted(chosen)}})
    if draw(st.booleans()):
        doc["sinks"] = []
        for kind in draw(st.lists(st.sampled_from(sorted(SINKS)), max_size=2)):
            keys = SINKS[kind]
            chosen = set(draw(st.lists(st.sampled_from(sorted(keys)), max_size=3)))
            chosen |= set(REQUIRED.get(kind, ()))
            doc["sinks"].append({"type": kind, **{k: draw(keys[k]) for k in sorted(chosen)}})
    still: list[tuple[Callable[[], object], object]] = []
    faults = [draw(_fault(doc, still)) for _ in range(draw(st.integers(0, 2)))]
    return doc, faults, any(get() is value for get, value in still)


#: values no key takes (a path also refuses NUL)
def _never(key: str, value: object) -> bool:
    if isinstance(value, float) and (math.isnan(value) or value == -math.inf):
        return True
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**1024:
        return True
    return key in PATH_KEYS and isinstance(value, str) and "\x00" in value


PATH_KEYS = {"stop_file", "control_socket", "path", "spool"}


def _at(doc: dict[str, Any], section: str, key: str, index: int | None = None) -> object:
    """The value at ``section.key`` (``section[index].key``) now, or None."""
    table: object = doc.get(section)
    if index is not None:
        table = table[index] if isinstance(table, list) and index < len(table) else None
    return table.get(key) if isinstance(table, dict) else None


def _fault(
    doc: dict[str, Any], still: list[tuple[Callable[[], object], object]]
) -> st.SearchStrategy[str]:
    @st.composite
    def inject(draw: st.DrawFn) -> str:
        where = draw(st.sampled_from(["section", "key", "unknown", "array"]))
        if where == "unknown":
            name = draw(st.sampled_from(["gaurd", "rate", "x", "Guard"]))
            doc[name] = draw(WRONG)
            return name
        if where == "array":
            section = draw(st.sampled_from(["sources", "sinks"]))
            entries = doc.setdefault(section, [])
            if not entries or draw(st.booleans()):
                entries.append({"type": draw(st.one_of(NASTY_TEXT, st.sampled_from(["cpu"])))})
                return f"{section}[{len(entries) - 1}]"
            i = draw(st.integers(0, len(entries) - 1))
            known = (SOURCES if section == "sources" else SINKS).get(entries[i]["type"], {})
            key = draw(st.sampled_from([*sorted(known), "unknown_key"]))
            value = entries[i][key] = draw(WRONG)
            if _never(key, value):
                still.append((lambda: _at(doc, section, key, i), value))
            return f"{section}[{i}]"
        section = draw(st.sampled_from(sorted(SECTIONS)))
        if where == "section":
            doc[section] = draw(WRONG)
            return section
        table = doc.get(section)
        if not isinstance(table, dict):
            table = doc[section] = {"path": _tmp_path("history.db")} if section == "history" else {}
        key = draw(st.sampled_from([*sorted(SECTIONS[section]), "unknown_key"]))
        value = table[key] = draw(WRONG)
        if _never(key, value):
            still.append((lambda: _at(doc, section, key), value))
        return f"{section}.{key}" if section != "calendar" else section

    return inject()


def _names_a_fault(field: str, faults: list[str]) -> bool:
    """The error's field is ``file: path``; the path lies under one of the faults."""
    _, _, path = field.partition(": ")
    return any(path == f or path.startswith((f + ".", f + "[", f + ":")) for f in faults)


def _build(config: Config) -> None:
    """Build the guard as ``wedguard copy`` would (a fake clock starts no threads;
    no Prometheus server is started here)."""
    sinks = tuple(
        attrs.evolve(s, options={k: v for k, v in s.options.items() if k != "port"})
        for s in config.sinks
    )
    with attrs.evolve(config, sinks=sinks).assemble(clock=FakeClock()) as built:
        assert built.guard.decision() is not None


@settings(
    max_examples=DOCUMENTS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(documents())
def test_a_document_is_a_working_config_or_a_config_error_naming_the_key(
    case: tuple[dict[str, Any], list[str], bool],
) -> None:
    """Property: Config.from_dict accepts the document and the guard builds, or it
    raises one ConfigError naming the file and the key path of a fault. A value no key
    takes (NaN, -inf, 10**400, NUL in a path) is always refused."""
    doc, faults, never = case
    config, exc = attempt(lambda: Config.from_dict(doc, path="fuzz.toml", env=False))
    if exc is not None:
        assert exc.field.startswith("fuzz.toml"), exc
        assert faults, f"a valid document was refused: {exc}"
        assert _names_a_fault(exc.field, faults), (exc, faults)
        event("refused")
        return
    event("accepted")
    assert not never, f"accepted a value no key takes: {doc!r}"
    assert config is not None
    with in_tmp():
        _build(config)


# -- through a file: TOML text, then raw bytes ---------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        out = []
        for c in value:
            if c in '"\\':
                out.append("\\" + c)
            elif ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF:
                out.append(f"\\u{ord(c):04x}")
            else:
                out.append(c)
        return '"' + "".join(out) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"


def to_toml(doc: dict[str, Any]) -> str:
    lines = [f'"{k}" = {_toml_value(v)}' for k, v in doc.items() if not isinstance(v, (dict, list))]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f'["{k}"]')
            lines.extend(f'"{kk}" = {_toml_value(vv)}' for kk, vv in v.items())
        elif isinstance(v, list) and v and all(isinstance(e, dict) for e in v):
            for entry in v:
                lines.append(f'[["{k}"]]')
                lines.extend(f'"{kk}" = {_toml_value(vv)}' for kk, vv in entry.items())
        elif isinstance(v, list):
            lines.insert(0, f'"{k}" = {_toml_value(v)}')
    return "\n".join(lines) + "\n"


@settings(max_examples=FILES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_a_file_is_loaded_or_refused_with_its_name(
    case: tuple[dict[str, Any], list[str], bool],
) -> None:
    """Property: load_config on the TOML text returns a Config or raises a ConfigError
    whose field starts with the file's name."""
    doc, _faults, _never = case
    path = _TMP / "fuzz.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    _config, exc = attempt(lambda: load_config(path, env=False))
    if exc is not None:
        assert exc.field.startswith(str(path)) or str(exc).startswith(str(path)), exc


VALID = b'[guard]\nrate = "20MB/s"\nstop_file = "/tmp/x.stop"\n[calendar]\ntz = "UTC"\nrules = "Mon-Fri 06:00-22:00 peak 10Mbit/s"\n'


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data)))
        what = draw(st.sampled_from(["insert", "replace", "delete"]))
        byte = draw(st.sampled_from([0x00, 0xFF, 0xC3, 0x80, 0xED, 0x22, 0x5B, 0x0A, 0x3D]))
        if what == "insert":
            data.insert(i, byte)
        elif what == "replace" and i < len(data):
            data[i] = byte
        elif i < len(data):
            del data[i]
    return bytes(data)


@settings(max_examples=BYTES, deadline=None)
@given(st.one_of(mangled(), st.binary(max_size=200)))
def test_any_bytes_are_loaded_or_refused_with_the_files_name(data: bytes) -> None:
    """Property: a file of any bytes (not UTF-8, NUL, cut short) loads or is one
    ConfigError naming the file, never a UnicodeDecodeError or ValueError."""
    path = _TMP / "bytes.toml"
    path.write_bytes(data)
    _config, exc = attempt(lambda: load_config(path, env=False))
    if exc is not None:
        assert str(exc).startswith(str(path)), exc


# -- what the runtime refuses, `config check` refuses --------------------------------------


def _files() -> Iterator[tuple[str, str, str]]:
    long_socket = "/tmp/" + "s" * 120
    yield "guard.stop_file", '[guard]\nstop_file = "/run/a\\u0000b"\n', "NUL"
    yield "history.path", f'[history]\npath = "/tmp/{"h" * 256}"\n', "255 per name"
    yield "guard.control_socket", f'[guard]\ncontrol_socket = "{long_socket}"\n', "107 bytes"
    yield "guard.stop_check_interval", "[guard]\nstop_check_interval = 1e-300\n", "1ms"
    yield "guard.sample_interval", '[guard]\nsample_interval = "2d"\n', "1 day"
    yield "guard.rate", "[guard]\nrate = 1e-300\n", "0.001"
    yield "guard.ops_rate", "[guard]\nops_rate = 1e-9\n", "0.001"
    yield "guard.slot_timeout", '[guard]\nslot_timeout = "60d"\n', "30 days"
    yield "sinks[0].port", '[[sinks]]\ntype = "prometheus"\nport = 70000\n', "0-65535"
    yield "sinks[0].port", '[[sinks]]\ntype = "prometheus"\nport = -1\n', "0-65535"
    yield "sinks[0].addr", '[[sinks]]\ntype = "prometheus"\naddr = "a b"\n', "host"
    yield (
        "sinks[0].starttls",
        '[[sinks]]\ntype = "smtp"\nsender = "a@b.org"\nrecipients = ["c@d.org"]\n'
        "ssl = true\nstarttls = true\n",
        "ssl",
    )
    yield "sinks[0].path", '[[sinks]]\ntype = "jsonl"\npath = "a\\u0000"\n', "NUL"
    yield "history.path", '[history]\npath = "h\\u0000.db"\n', "NUL"
    yield "alerts.spool", '[alerts]\nspool = "s\\u0000"\n', "NUL"
    yield "alerts.group_wait", "[alerts]\ngroup_wait = 1e300\n", "ten years"
    yield "breaker.recovery_timeout", "[breaker]\nrecovery_timeout = 1e300\n", "ten years"
    yield "redis.url", '[redis]\nurl = "redis://localhost:99999/0"\n', "port"
    yield "redis.url", '[redis]\nurl = "redis://localhost:0/0"\n', "port"
    yield "redis.url", '[redis]\nurl = "redis://[::1/0"\n', "redis://"
    yield "redis.url", '[redis]\nurl = "redis:///0"\n', "host"
    yield "redis.url", '[redis]\nurl = "redis://h/0?socket_timeout=x"\n', "redis-py"
    yield "redis.url", f'[redis]\nurl = "unix://{long_socket}"\n', "107 bytes"
    yield "sources[0].url", '[[sources]]\ntype = "http"\nurl = "http://[::1"\n', "URL"
    yield "redis.timeout", '[redis]\nurl = "redis://localhost/0"\ntimeout = 1e300\n', "86400"
    yield (
        "sources[0].pid",
        '[[sources]]\ntype = "process"\npid = 100000000000000000000\n',
        "2147483647",
    )


@pytest.mark.parametrize(("field", "text", "says"), list(_files()))
def test_config_check_refuses_what_the_runtime_would(
    tmp_path: Path, field: str, text: str, says: str
) -> None:
    path = tmp_path / "wedguard.toml"
    path.write_text(text)
    with pytest.raises(wg.ConfigError) as info:
        load_config(path, env=False)
    assert info.value.field == f"{path}: {field}", info.value
    assert says in info.value.expected, info.value


def test_a_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[guard]\nstop_file = "/run/caf\u00e9.stop"\n'.encode("latin-1"))
    with pytest.raises(wg.ConfigError) as info:
        load_config(path)
    assert info.value.field == str(path)
    assert info.value.value == b"\xe9"
    assert "UTF-8" in info.value.expected


@pytest.mark.parametrize("kind", ["postgres", "database"])
def test_an_unset_dsn_variable_is_named_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A source's environment variable that is not set: the message names the file and
    the key once (it read ``f: sources[0].f: sources[0].dsn_env``)."""
    monkeypatch.delenv("WG_TEST_UNSET_DSN", raising=False)
    path = tmp_path / "wedguard.toml"
    path.write_text(f'[[sources]]\ntype = "{kind}"\ndsn_env = "WG_TEST_UNSET_DSN"\n')
    with pytest.raises(wg.ConfigError) as info:
        load_config(path)
    assert info.value.field == f"{path}: sources[0].dsn_env"
    assert str(info.value).count(str(path)) == 1


# -- what only the host can tell: `config check` (not `--no-env`) -----------------------------


def _host_files(tmp_path: Path) -> Iterator[tuple[str, str]]:
    missing = tmp_path / "missing"
    yield "guard.stop_file", f'[guard]\nstop_file = "{missing}/stop"\n'
    yield "guard.control_socket", f'[guard]\ncontrol_socket = "{missing}/ctl.sock"\n'
    yield "history.path", f'[history]\npath = "{missing}/history.db"\n'
    yield "sources[0].pid", '[[sources]]\ntype = "process"\npid = 2147483646\n'


def test_config_check_refuses_what_would_fail_on_this_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory that does not exist (``wedguard stop`` never makes one, a guard
    refuses a socket it cannot bind, history would store nothing) and a process that
    does not run: exit 2 and one line naming the key; ``--no-env`` (checking a file
    away from its host) accepts them, and so does loading the file."""
    from wedguard.cli import main

    for key, text in _host_files(tmp_path):
        path = tmp_path / "wedguard.toml"
        path.write_text(text)
        assert main(["config", "check", str(path)]) == 2, key
        err = capsys.readouterr().err
        assert err.startswith(f"wedguard: {path}: {key}: "), err
        assert "Traceback" not in err
        assert main(["config", "check", "--no-env", str(path)]) == 0, key
        capsys.readouterr()
        load_config(path)
    (tmp_path / "missing").mkdir()
    for key, text in list(_host_files(tmp_path))[:3]:
        path = tmp_path / "wedguard.toml"
        path.write_text(text)
        assert main(["config", "check", str(path)]) == 0, (key, capsys.readouterr().err)
        capsys.readouterr()


def test_a_file_that_never_ends_is_refused_not_read_for_ever(tmp_path: Path) -> None:
    """``/dev/zero`` (or a log file given by mistake) as the configuration: refused
    after 1 MiB, naming the file, instead of filling the memory."""
    big = tmp_path / "big.toml"
    big.write_bytes(b"# comment\n" * 110_000)
    for path in (big, Path("/dev/zero")):
        with pytest.raises(wg.ConfigError) as info:
            load_config(path)
        assert info.value.field == str(path)
        assert "at most 1 MiB" in info.value.expected
    ok = tmp_path / "ok.toml"
    ok.write_bytes(b"# comment\n" * 100_000 + b'[guard]\nrate = "5MB/s"\n')
    assert load_config(ok).guard.rate == 5e6
