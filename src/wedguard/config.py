"""wedguard.toml: a configuration file that becomes a :class:`~wedguard.Guard`.

:func:`load_config` reads and validates a file and returns a :class:`Config`, the
effective configuration (every default filled in, every value checked). It does no
I/O beyond reading the file and the environment variables that hold secrets.
:func:`load` goes one step further and builds the :class:`~wedguard.Guard`.

Every unknown key and every bad value is a :class:`~wedguard.ConfigError` naming the
file, the key path and what was expected::

    wedguard.toml: guard.rate: '10 parsecs' is not valid; expected a rate such as '10MB/s'

Secrets (webhook URLs, signing keys, SMTP passwords, database passwords) are never read
from the file: a sink names the environment variable that holds one (``url_env``,
``secret_env``, ``password_env``, ``dsn_env``) and :meth:`Config.render` shows only
those names.

Example::

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "wedguard.toml")
    >>> with open(path, "w") as f:
    ...     _ = f.write('''
    ... [guard]
    ... rate = "20MB/s"
    ... max_concurrent = 1
    ... [calendar]
    ... tz = "Europe/London"
    ... rules = "Mon-Fri 06:00-22:00 peak 10Mbit/s"
    ... ''')
    >>> config = load_config(path)
    >>> config.guard.rate, config.guard.max_concurrent
    (20000000.0, 1)
    >>> [str(rule) for rule in config.calendar.rules]
    ['Mon-Fri 06:00-22:00 peak 10Mbit/s']

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import os
import re
import sys
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from wedguard import _checks, _fs
from wedguard.clock import Clock
from wedguard.errors import ConfigError
from wedguard.interfaces import Sink, Source
from wedguard.levels import Level
from wedguard.policy.breaker import CircuitBreaker
from wedguard.policy.calendar import PeakHourCalendar
from wedguard.policy.controllers import AIMDController, LedbatController
from wedguard.policy.impact import ImpactAnalyzer, Thresholds
from wedguard.redact import redact_url, url_has_secret
from wedguard.runtime.alerts import AlertDispatcher, Severity
from wedguard.runtime.guard import MAX_INTERVAL, MAX_SLOT_TIMEOUT, MIN_INTERVAL, MIN_RATE, Guard
from wedguard.runtime.priority import check_nice
from wedguard.units import (
    format_duration,
    format_rate,
    format_size,
    parse_duration,
    parse_rate,
    parse_size,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "Built",
    "Config",
    "GuardSettings",
    "RunSettings",
    "SinkSpec",
    "SourceSpec",
    "load",
    "load_config",
]

_RATE_WHAT = "a rate such as '10MB/s', '10Mbit/s', '512KiB/s' or 'off'"
_DURATION_WHAT = "a duration such as '30s', '5m', '1h30m' or a number of seconds"
_SIZE_WHAT = "a size such as '500MB', '512KiB' or a number of bytes"
#: the longest duration a file may give: ten years (thread waits and sockets refuse
#: values beyond what the platform's time_t holds)
MAX_DURATION = 10 * 365 * 86400.0
_SECTIONS = (
    "guard",
    "calendar",
    "thresholds",
    "controller",
    "sources",
    "sinks",
    "alerts",
    "history",
    "breaker",
    "redis",
    "run",
)
_SEVERITIES = {s.name.lower(): s for s in Severity}


# -- small validators: each takes (value, path) and returns the normalised value ------


class _Ctx:
    """Where errors are reported: the file's name, prefixed to every key path."""

    __slots__ = ("file",)

    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, path: str, value: object, expected: str) -> ConfigError:
        return ConfigError(f"{self.file}: {path}", value, expected)

    def rewrap(self, prefix: str, exc: ConfigError) -> ConfigError:
        """A library's ConfigError (field ``rate``) as ``file: prefix.rate``."""
        field = exc.field
        if not exc.expected and exc.value is None:  # a free-form message
            return ConfigError(f"{self.file}: {prefix}: {exc}")
        if field.startswith(f"{prefix}.") or field == prefix:
            path = field
        elif field:
            path = f"{prefix}.{field}" if not field.startswith("line ") else f"{prefix}: {field}"
        else:
            path = prefix
        return ConfigError(f"{self.file}: {path}", exc.value, exc.expected)


Check = Callable[[_Ctx, object, str], Any]


def _str(ctx: _Ctx, value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ctx.error(path, value, "a non-empty string")
    return value


def _bool(ctx: _Ctx, value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(path, value, "true or false")
    return value


_INT_MAX = 2**31 - 1


def _int(minimum: int) -> Check:
    def check(ctx: _Ctx, value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ctx.error(path, value, f"a whole number >= {minimum}")
        if value > _INT_MAX:
            raise ctx.error(path, value, f"a whole number from {minimum} to {_INT_MAX}")
        return value

    return check


def _number(ctx: _Ctx, value: object, path: str) -> float:
    try:
        number = _checks.real(value, path, "a number")
    except ConfigError:
        raise ctx.error(path, value, "a number") from None
    if not math.isfinite(number):
        raise ctx.error(path, value, "a number")
    return number


def _rate(ctx: _Ctx, value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ctx.error(path, value, _RATE_WHAT)
    try:
        rate = parse_rate(value)
    except ConfigError:
        raise ctx.error(path, value, _RATE_WHAT) from None
    if not rate > 0:
        raise ctx.error(path, value, "a rate > 0 ('off' for unlimited)")
    return rate


def _duration(ctx: _Ctx, value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ctx.error(path, value, _DURATION_WHAT)
    try:
        seconds = parse_duration(value)
    except ConfigError:
        raise ctx.error(path, value, _DURATION_WHAT) from None
    if not 0 <= seconds < math.inf:
        raise ctx.error(path, value, _DURATION_WHAT)
    if seconds > MAX_DURATION:
        raise ctx.error(path, value, "a duration of at most ten years")
    return seconds


def _size(ctx: _Ctx, value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ctx.error(path, value, _SIZE_WHAT)
    try:
        return parse_size(value)
    except ConfigError:
        raise ctx.error(path, value, _SIZE_WHAT) from None


def _strings(ctx: _Ctx, value: object, path: str) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return (value,)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ctx.error(path, value, "a string or a non-empty list of strings")
    return tuple(value)


def _env_name(ctx: _Ctx, value: object, path: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ctx.error(
            path, value, "the name of an environment variable, e.g. 'SLACK_WEBHOOK_URL'"
        )
    return value


def _path(ctx: _Ctx, value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ctx.error(path, value, "a file path")
    try:
        return _checks.path(os.path.expanduser(value), path)
    except ConfigError as exc:
        raise ctx.error(path, value, exc.expected) from None


def _stop_file(ctx: _Ctx, value: object, path: str) -> str:
    """A stop file's path, in a directory nobody else controls (what ``Guard`` would
    refuse at run time, ``config check`` refuses now; a directory that does not exist
    yet passes, as it does for the guard)."""
    full = _path(ctx, value, path)
    try:
        _fs.check_stop_location(full, field=path)
    except ConfigError as exc:
        raise ctx.error(path, value, exc.expected) from None
    return full


def _socket_path(ctx: _Ctx, value: object, path: str) -> str:
    full = _path(ctx, value, path)
    try:
        return _checks.socket_path(full, path)
    except ConfigError as exc:
        raise ctx.error(path, value, exc.expected) from None


def _port(low: int) -> Check:
    def check(ctx: _Ctx, value: object, path: str) -> int:
        try:
            return _checks.port(value, path, low=low)
        except ConfigError as exc:
            raise ctx.error(path, value, exc.expected) from None

    return check


def _host(ctx: _Ctx, value: object, path: str) -> str:
    text = _str(ctx, value, path)
    if any(c.isspace() or c in "\x00/@" for c in text):
        raise ctx.error(path, value, "a host name or an IP address")
    return text


def _table(ctx: _Ctx, value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ctx.error(path, value, "a table")
    return value


def _take(
    ctx: _Ctx, table: Mapping[str, Any], path: str, schema: Mapping[str, Check]
) -> dict[str, Any]:
    """Check every key of ``table`` against ``schema``; unknown keys are errors."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        check = schema.get(key)
        where = f"{path}.{key}" if path else key
        if check is None:
            known = ", ".join(sorted(schema)) or "no keys"
            raise ctx.error(where, value, f"a known key ({known})")
        out[key] = check(ctx, value, where)
    return out


# -- the effective configuration ----------------------------------------------------------


@attrs.frozen(slots=True)
class GuardSettings:
    """The ``[guard]`` table, every default filled in.

    Attributes:
        rate: the byte budget in bytes/s (``math.inf`` for ``"off"``).
        max_concurrent: sessions at once (None: no limit, written ``"off"``).
        stop_file: the path whose existence stops every session, or None.
        ops_rate: operations per second, or None for no limit.
        sample_interval: seconds between samples of the sources.
        stop_check_interval: seconds between looks at the stop file.
        slot_timeout: seconds a session waits for a slot (None: forever).
        control_socket: serve the live control plane on this Unix socket, or None.
        nice: niceness added to a thread while it runs a session (0: none).
        ionice: a thread running a session is in the idle I/O class.
    """

    rate: float = 50e6
    max_concurrent: int | None = 2
    stop_file: str | None = None
    ops_rate: float | None = None
    sample_interval: float = 1.0
    stop_check_interval: float = 0.1
    slot_timeout: float | None = None
    control_socket: str | None = None
    nice: int = 0
    ionice: bool = False


@attrs.frozen(slots=True)
class RunSettings:
    """The ``[run]`` table: commands run under the guard (``wedguard run``).

    Attributes:
        on_guard_death: what a watchdog does to the command if the guarding process
            dies, even by ``SIGKILL``: ``"resume"`` it, ``"terminate"`` it, ``"off"``
            (no watchdog), or ``"auto"`` (terminate when it holds a Redis slot, whose
            lease lapses with the guard; else resume).
    """

    on_guard_death: str = "auto"


def _on_guard_death(ctx: _Ctx, value: object, path: str) -> str:
    if value not in ("auto", "resume", "terminate", "off"):
        raise ctx.error(path, value, "'auto', 'resume', 'terminate' or 'off'")
    return str(value)


_RUN_SCHEMA: dict[str, Check] = {"on_guard_death": _on_guard_death}


@attrs.frozen(slots=True)
class SourceSpec:
    """One ``[[sources]]`` entry: its type and its (checked) options."""

    type: str
    options: Mapping[str, Any]
    index: int


@attrs.frozen(slots=True)
class SinkSpec:
    """One ``[[sinks]]`` entry: its type, options, and the alert severity it receives
    through the alert dispatcher (None: it receives every event directly)."""

    type: str
    options: Mapping[str, Any]
    alerts: Severity | None
    index: int


def _max_concurrent(ctx: _Ctx, value: object, path: str) -> int | None:
    if value in ("off", "unlimited"):
        return None
    return _int(1)(ctx, value, path)  # type: ignore[no-any-return]


def _opt_rate(ctx: _Ctx, value: object, path: str) -> float | None:
    rate = _rate(ctx, value, path)
    return None if rate == math.inf else rate


def _guard_rate(ctx: _Ctx, value: object, path: str) -> float:
    rate = _rate(ctx, value, path)
    if rate < MIN_RATE:
        raise ctx.error(path, value, f"a rate >= {MIN_RATE:g}/s ('off' for unlimited)")
    return rate


def _guard_opt_rate(ctx: _Ctx, value: object, path: str) -> float | None:
    rate = _guard_rate(ctx, value, path)
    return None if rate == math.inf else rate


def _interval(ctx: _Ctx, value: object, path: str) -> float:
    seconds = _duration(ctx, value, path)
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise ctx.error(path, value, "a duration from 1ms to 1 day")
    return seconds


def _slot_timeout(ctx: _Ctx, value: object, path: str) -> float | None:
    seconds = _opt_duration(ctx, value, path)
    if seconds is not None and seconds > MAX_SLOT_TIMEOUT:
        raise ctx.error(path, value, "a duration of at most 30 days, or 'forever'")
    return seconds


def _opt_duration(ctx: _Ctx, value: object, path: str) -> float | None:
    if value in ("off", "forever", "none"):
        return None
    return _duration(ctx, value, path)


def _nice(ctx: _Ctx, value: object, path: str) -> int:
    try:
        return check_nice(value)
    except ConfigError as exc:
        raise ctx.error(path, value, exc.expected) from None


def _positive_duration(ctx: _Ctx, value: object, path: str) -> float:
    seconds = _duration(ctx, value, path)
    if seconds <= 0:
        raise ctx.error(path, value, "a duration > 0")
    return seconds


_GUARD_SCHEMA: dict[str, Check] = {
    "rate": _guard_rate,
    "max_concurrent": _max_concurrent,
    "stop_file": _stop_file,
    "ops_rate": _guard_opt_rate,
    "sample_interval": _interval,
    "stop_check_interval": _interval,
    "slot_timeout": _slot_timeout,
    "control_socket": _socket_path,
    "nice": _nice,
    "ionice": _bool,
}


# -- calendar ---------------------------------------------------------------------------

_PRESETS = ("default", "wedding_platform", "none")


def _calendar(ctx: _Ctx, table: Mapping[str, Any]) -> PeakHourCalendar | None:
    data = dict(table)
    preset = data.pop("preset", None)
    if preset is None:
        if "event_dates" in data:
            raise ctx.error(
                "calendar.event_dates", data["event_dates"], "preset = 'wedding_platform' with it"
            )
        if set(data) <= {"tz"}:
            preset = "default"  # only a zone: the default peak hours, in that zone
    if preset is None:
        try:
            return PeakHourCalendar.from_dict(data)
        except ConfigError as exc:
            raise ctx.rewrap(
                "calendar.rules" if exc.field.startswith("line ") else "calendar", exc
            ) from None
    if preset not in _PRESETS:
        raise ctx.error("calendar.preset", preset, "one of " + ", ".join(repr(p) for p in _PRESETS))
    allowed = {"default": {"tz"}, "none": set(), "wedding_platform": {"tz", "event_dates"}}[preset]
    for key, value in data.items():
        if key not in allowed:
            known = ", ".join(sorted({"preset", *allowed}))
            raise ctx.error(
                f"calendar.{key}", value, f"a key the {preset!r} preset takes ({known})"
            )
    try:
        if preset == "none":
            return None
        if preset == "default":
            return PeakHourCalendar.default(tz=data.get("tz", "UTC"))
        dates = data.get("event_dates", [])
        if not isinstance(dates, list):
            raise ctx.error("calendar.event_dates", dates, "a list of dates such as ['2026-06-13']")
        return PeakHourCalendar.wedding_platform([str(d) for d in dates], tz=data.get("tz", "UTC"))
    except ConfigError as exc:
        if exc.field.startswith(ctx.file):
            raise
        raise ctx.rewrap("calendar", exc) from None


def _calendar_dict(calendar: PeakHourCalendar | None) -> dict[str, Any]:
    if calendar is None:
        return {"preset": "none"}
    data = calendar.to_dict()
    return {
        "tz": data["tz"],
        "default": data["default"],
        "rules": "\n".join(r.text(with_name=True) for r in calendar.rules),
    }


# -- thresholds and controller -------------------------------------------------------------

_THRESHOLD_FIELDS = ("api_latency", "db_latency", "backup_cpu", "backup_memory", "backup_network")


def _percent(value: object, *, fraction: bool) -> object:
    """'5%' -> 0.05 (fraction) or 5.0; 'off' -> None; anything else unchanged."""
    if value in ("off", "none"):
        return None
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            number = float(value.strip()[:-1])
        except ValueError:
            return value
        return number / 100 if fraction else number
    return value


def _threshold_value(name: str, value: object) -> object:
    if name in ("api_latency", "db_latency"):
        return _percent(value, fraction=True)
    if name == "backup_cpu":
        return _percent(value, fraction=False)
    if value in ("off", "none"):
        return None
    return value


def _thresholds(ctx: _Ctx, table: Mapping[str, Any]) -> Thresholds:
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key in _THRESHOLD_FIELDS:
            kwargs[key] = _threshold_value(key, value)
        elif key in ("relative", "absolute"):
            kwargs[key] = dict(_table(ctx, value, f"thresholds.{key}"))
        elif key == "critical":
            kwargs[key] = _number(ctx, value, "thresholds.critical")
        elif key == "per_level":
            levels = _table(ctx, value, "thresholds.per_level")
            per: dict[Level, dict[str, Any]] = {}
            for name, over in levels.items():
                if not isinstance(name, str) or name.upper() not in Level.__members__:
                    raise ctx.error(
                        f"thresholds.per_level.{name}", over, "a level: open, peak or blackout"
                    )
                over = _table(ctx, over, f"thresholds.per_level.{name}")
                per[Level[name.upper()]] = {k: _threshold_value(k, v) for k, v in over.items()}
            kwargs[key] = per
        else:
            known = ", ".join((*_THRESHOLD_FIELDS, "absolute", "critical", "per_level", "relative"))
            raise ctx.error(f"thresholds.{key}", value, f"a known key ({known})")
    try:
        return Thresholds(**kwargs)
    except ConfigError as exc:
        raise ctx.rewrap("thresholds", exc) from None


_CONTROLLERS: dict[str, type[Any]] = {"aimd": AIMDController, "ledbat": LedbatController}


def _parameters(cls: type[Any], skip: Sequence[str] = ()) -> list[str]:
    """The keyword parameters of ``cls.__init__`` a file may set."""
    params = inspect.signature(cls.__init__).parameters
    return [
        n
        for n, p in params.items()
        if n != "self" and n not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]


def _controller(ctx: _Ctx, table: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(table)
    kind = data.pop("kind", "aimd")
    if not isinstance(kind, str) or kind not in _CONTROLLERS:
        raise ctx.error("controller.kind", kind, "'aimd' or 'ledbat'")
    cls = _CONTROLLERS[kind]
    allowed = _parameters(cls)
    for key, value in data.items():
        if key not in allowed:
            known = ", ".join(["kind", *allowed])
            raise ctx.error(
                f"controller.{key}", value, f"a parameter of the {kind} controller ({known})"
            )
    try:
        cls(**data)
    except ConfigError as exc:
        raise ctx.rewrap("controller", exc) from None
    except TypeError as exc:  # a value of the wrong kind that the controller did not name
        raise ConfigError(f"{ctx.file}: controller: {exc}") from None
    return {"kind": kind, **data}


# -- breaker, alerts, history ------------------------------------------------------------

_BREAKER_SCHEMA: dict[str, Check] = {
    "failure_threshold": _int(1),
    "recovery_timeout": _positive_duration,
    "half_open_max_calls": _int(1),
    "success_threshold": _int(1),
}

_ALERTS_SCHEMA: dict[str, Check] = {
    "group_by": lambda ctx, v, p: () if v == [] else _strings(ctx, v, p),
    "group_wait": _duration,
    "group_interval": _duration,
    "repeat_interval": _positive_duration,
    "escalate_after": _opt_duration,
    "spool": _path,
    "max_attempts": _int(1),
    "backoff": _positive_duration,
    "backoff_max": _positive_duration,
}

_HISTORY_SCHEMA: dict[str, Check] = {
    "path": _path,
    "retention": _positive_duration,
    "session_retention": _positive_duration,
    "backlog": _int(1),
    "retry": _positive_duration,
    "retry_max": _positive_duration,
}


def _share(ctx: _Ctx, value: object, path: str) -> float:
    number = _number(ctx, value, path)
    if not 0 < number <= 1:
        raise ctx.error(path, value, "a share above 0 and at most 1, e.g. 0.25")
    return number


def _timeout(ctx: _Ctx, value: object, path: str) -> float:
    seconds = _number(ctx, value, path)
    if not 0 < seconds <= _checks.MAX_TIMEOUT:
        raise ctx.error(path, value, f"seconds > 0 and <= {_checks.MAX_TIMEOUT:g}")
    return seconds


_REDIS_SCHEMA: dict[str, Check] = {
    "url": _str,
    "url_env": _env_name,
    "prefix": _str,
    "name": _str,
    "fallback_share": _share,
    "fallback_slots": _int(0),
    "timeout": _timeout,
    "probe_interval": _timeout,
}


def _redis(ctx: _Ctx, table: Mapping[str, Any], *, env: bool) -> dict[str, Any]:
    """Check ``[redis]``: one URL (in the file without a password, or from the
    environment), and redis-py installed."""
    options = _take(ctx, table, "redis", _REDIS_SCHEMA)
    if ("url" in options) == ("url_env" in options):
        raise ctx.error("redis.url", None, "exactly one of url or url_env")
    url = options.get("url")
    if url is not None and url_has_secret(url):
        raise ctx.error("redis.url", _redact_url(url), "a URL without a password (use url_env)")
    field = "redis.url"
    if url is None and env:
        url = _environment(ctx, "redis.url_env", options["url_env"])
        field = "redis.url_env"
    if url is not None and _split(url).scheme not in ("redis", "rediss", "unix"):
        raise ctx.error(field, _redact_url(url), "a redis://, rediss:// or unix:// URL")
    try:
        redis = importlib.import_module("redis")
    except ImportError:
        raise ctx.error(
            "redis", "redis", "redis-py installed (pip install 'wedguard[redis]')"
        ) from None
    if url is not None:
        _redis_url(ctx, field, url, redis)
    return options


def _redis_url(ctx: _Ctx, field: str, url: str, redis: Any) -> None:
    """What redis-py would refuse when it connects: a bad port, a malformed host, a
    NUL in a socket path, an option it does not know the value of."""
    shown = _redact_url(url)
    parts = _split(url)
    try:
        port = parts.port
    except ValueError:
        raise ctx.error(field, shown, "a URL with a port 1-65535") from None
    if port == 0:
        raise ctx.error(field, shown, "a URL with a port 1-65535")
    if parts.scheme in ("redis", "rediss") and not parts.hostname:
        raise ctx.error(field, shown, "a URL with a host, e.g. redis://localhost:6379/0")
    if "\x00" in urllib.parse.unquote(url):
        raise ctx.error(field, shown, "a URL without NUL characters")
    if parts.scheme == "unix":
        try:
            _checks.socket_path(urllib.parse.unquote(parts.path), field)
        except ConfigError as exc:
            raise ctx.error(field, shown, exc.expected) from None
    try:
        redis.ConnectionPool.from_url(url)
    except (ValueError, TypeError) as exc:
        raise ctx.error(field, shown, f"a URL redis-py reads ({exc})") from None


# -- sources ------------------------------------------------------------------------------


def _url(ctx: _Ctx, value: object, path: str) -> str:
    if not isinstance(value, str) or _split(value).scheme not in ("http", "https"):
        raise ctx.error(path, value, "an http:// or https:// URL")
    if url_has_secret(value):
        raise ctx.error(path, _redact_url(value), "a URL without a password in it")
    return value


def _cgroup(ctx: _Ctx, value: object, path: str) -> bool | str:
    if isinstance(value, bool):
        return value
    return _path(ctx, value, path)


def _fraction(ctx: _Ctx, value: object, path: str) -> float:
    number = _number(ctx, value, path)
    if not 0 < number < 1:
        raise ctx.error(path, value, "a fraction between 0 and 1, e.g. 0.95")
    return number


def _labels(ctx: _Ctx, value: object, path: str) -> dict[str, str]:
    table = _table(ctx, value, path)
    for k, v in table.items():
        if not isinstance(v, str):
            raise ctx.error(f"{path}.{k}", v, "a string")
    return dict(table)


def _resources(ctx: _Ctx, value: object, path: str) -> tuple[str, ...]:
    items = _strings(ctx, value, path)
    for item in items:
        if item not in ("cpu", "io", "memory"):
            raise ctx.error(path, value, "some of 'cpu', 'io', 'memory'")
    return items


_METRIC: Check = _str
_SOURCE_SCHEMAS: dict[str, dict[str, Check]] = {
    "system": {"cgroup": _cgroup, "disks": _bool, "network": _bool},
    "process": {"pid": _int(1), "include_children": _bool, "prefix": _str},
    "http": {
        "url": _url,
        "timeout": _timeout,
        "method": _str,
        "metric": _METRIC,
        "burst": _int(1),
        "percentile": _fraction,
    },
    "service_latency": {
        "url": _url,
        "histogram": _str,
        "metric": _METRIC,
        "quantile": _fraction,
        "labels": _labels,
        "timeout": _timeout,
        "min_requests": _int(1),
    },
    "pressure": {"cgroup": _path, "resources": _resources, "system": _bool, "prefix": _str},
    "database": {
        "dsn": _str,
        "dsn_env": _env_name,
        "password_env": _env_name,
        "metric": _METRIC,
        "timeout": _timeout,
        "query": _str,
    },
    "postgres": {
        "dsn": _str,
        "dsn_env": _env_name,
        "password_env": _env_name,
        "query": _str,
        "timeout": _timeout,
        "name": _str,
        "statements": _bool,
        "backoff": _positive_duration,
        "backoff_max": _positive_duration,
        "lower_backends": _str,
    },
}
_REQUIRED: dict[str, tuple[str, ...]] = {"http": ("url",), "service_latency": ("url",)}


def _split(url: str) -> urllib.parse.SplitResult:
    """``urlsplit`` that reads a malformed URL (``http://[::1``) as having no scheme."""
    try:
        return urllib.parse.urlsplit(url)
    except ValueError:
        return urllib.parse.SplitResult("", "", "", "", "")


def _redact_url(url: str) -> str:
    """The URL or DSN with its secrets hidden (:func:`wedguard.redact.redact_url`)."""
    return redact_url(url)


_DRIVERS = {
    "postgresql": (("psycopg", "psycopg2"), "PostgreSQL", "pip install psycopg (or psycopg2)"),
    "postgres": (("psycopg", "psycopg2"), "PostgreSQL", "pip install psycopg (or psycopg2)"),
    "mysql": (("pymysql",), "MySQL", "pip install pymysql"),
}


def _find_driver(scheme: str) -> str | None:
    for module in _DRIVERS[scheme][0]:
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return module
    return None


def _database_source(ctx: _Ctx, index: int, options: Mapping[str, Any], *, env: bool) -> None:
    """Check a database probe: one DSN, a known scheme, an installed driver."""
    where = f"sources[{index}]"
    if ("dsn" in options) == ("dsn_env" in options):
        raise ctx.error(f"{where}.dsn", None, "exactly one of dsn or dsn_env")
    if "dsn" in options:
        dsn = options["dsn"]
        if url_has_secret(dsn):
            raise ctx.error(
                f"{where}.dsn",
                _redact_url(dsn),
                "a DSN without a password (put it in password_env, or the DSN in dsn_env)",
            )
    elif env:
        dsn = _environment(ctx, f"{where}.dsn_env", options["dsn_env"])
    else:
        return
    scheme = _split(dsn).scheme.split("+", 1)[0]
    if scheme not in _DRIVERS:
        raise ctx.error(
            f"{where}.dsn", _redact_url(dsn), "a postgresql://, postgres:// or mysql:// DSN"
        )
    if _find_driver(scheme) is None:
        modules, name, hint = _DRIVERS[scheme]
        raise ctx.error(
            f"{where}.type",
            "database",
            f"a {name} driver installed ({' or '.join(modules)} is missing: {hint})",
        )
    if "password_env" in options:
        _environment(ctx, f"{where}.password_env", options["password_env"])


def _postgres_source(ctx: _Ctx, index: int, options: Mapping[str, Any]) -> None:
    """Check a PostgreSQL source: one DSN, and no password written in the file."""
    from wedguard.sources.postgres import redact_dsn

    where = f"sources[{index}]"
    if ("dsn" in options) == ("dsn_env" in options):
        raise ctx.error(f"{where}.dsn", None, "exactly one of dsn or dsn_env")
    dsn = options.get("dsn")
    if dsn is not None and redact_dsn(dsn) != dsn:
        raise ctx.error(
            f"{where}.dsn",
            redact_dsn(dsn),
            "a DSN without a password (put it in password_env, or the DSN in dsn_env)",
        )


def _environment(ctx: _Ctx, path: str, name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ctx.error(path, name, "the name of a set, non-empty environment variable")
    return value


def _typed_tables(
    ctx: _Ctx,
    value: object,
    section: str,
    schemas: Mapping[str, Any],
    required: Mapping[str, tuple[str, ...]],
    common: Mapping[str, Any] | None = None,
    secrets: tuple[str, ...] = (),
) -> Iterator[tuple[int, str, str, dict[str, Any]]]:
    """Each ``[[section]]`` table as ``(index, where, type, options)``: the type is one of
    ``schemas``, the keys are that type's (plus ``common``), the required keys are there
    and no key in ``secrets`` is given in the file."""
    if not isinstance(value, list):
        raise ctx.error(section, value, f"an array of tables ([[{section}]])")
    noun = section[:-1]
    for i, entry in enumerate(value):
        where = f"{section}[{i}]"
        table = dict(_table(ctx, entry, where))
        kind = table.pop("type", None)
        if not isinstance(kind, str) or kind not in schemas:
            raise ctx.error(f"{where}.type", kind, "one of " + ", ".join(schemas))
        for key in secrets:
            if key in table:
                raise ctx.error(
                    f"{where}.{key}",
                    "***",
                    f"{key}_env naming an environment variable (secrets are never read from the file)",
                )
        schema = schemas[kind] if common is None else {**schemas[kind], **common}
        options = _take(ctx, table, where, schema)
        for key in required.get(kind, ()):
            if key not in options:
                raise ctx.error(f"{where}.{key}", None, f"a {key} for a {kind} {noun}")
        yield i, where, kind, options


def _sources(ctx: _Ctx, value: object, *, env: bool) -> tuple[SourceSpec, ...]:
    specs = []
    for i, _where, kind, options in _typed_tables(
        ctx, value, "sources", _SOURCE_SCHEMAS, _REQUIRED
    ):
        if kind == "database":
            _database_source(ctx, i, options, env=env)
        elif kind == "postgres":
            _postgres_source(ctx, i, options)
        specs.append(SourceSpec(kind, options, i))
    return tuple(specs)


def _connect(dsn: str, password: str | None, timeout: float) -> Any:
    """A database connection from a DSN with the driver that is installed."""
    parts = urllib.parse.urlsplit(dsn)
    scheme = parts.scheme.split("+", 1)[0]
    module_name = _find_driver(scheme)
    if module_name is None:  # pragma: no cover - checked when the file was read
        raise ConfigError("dsn", _redact_url(dsn), "a database driver installed")
    module = importlib.import_module(module_name)
    if module_name in ("psycopg", "psycopg2"):
        kwargs: dict[str, Any] = {"connect_timeout": max(1, int(timeout))}
        if password is not None:
            kwargs["password"] = password
        conn = module.connect(dsn, **kwargs)
        with contextlib.suppress(Exception):
            conn.autocommit = True
        return conn
    query = urllib.parse.parse_qs(parts.query)
    return module.connect(
        host=parts.hostname or "localhost",
        port=parts.port or 3306,
        user=urllib.parse.unquote(parts.username or ""),
        password=password if password is not None else urllib.parse.unquote(parts.password or ""),
        database=parts.path.lstrip("/") or None,
        connect_timeout=timeout,
        autocommit=True,
        **({"charset": query["charset"][0]} if "charset" in query else {}),
    )


class _DatabaseCheck:
    """Runs the probe query on one connection, reconnecting after a failure."""

    def __init__(self, dsn: str, password: str | None, timeout: float, query: str) -> None:
        self._dsn = dsn
        self._password = password
        self._timeout = timeout
        self._query = query
        self._conn: Any = None

    def __call__(self) -> None:
        try:
            if self._conn is None:
                self._conn = _connect(self._dsn, self._password, self._timeout)
            cur = self._conn.cursor()
            try:
                cur.execute(self._query)
                cur.fetchall()
            finally:
                cur.close()
        except Exception:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            raise

    def __repr__(self) -> str:
        return f"database probe {_redact_url(self._dsn)}"


def _build_source(ctx: _Ctx, spec: SourceSpec) -> Source:
    from wedguard import sources as src

    opts = dict(spec.options)
    try:
        if spec.type == "system":
            cgroup = opts.pop("cgroup", None)
            return src.SystemSource(cgroup=cgroup, **opts)
        if spec.type == "process":
            return src.ProcessSource(**opts)
        if spec.type == "http":
            return src.HttpProbe(**opts)
        if spec.type == "service_latency":
            return src.ServiceLatencySource(**opts)
        if spec.type == "pressure":
            if "resources" in opts:
                opts["resources"] = tuple(opts["resources"])
            return src.PressureSource(**opts)
        if spec.type == "postgres":
            where = f"sources[{spec.index}]"
            dsn = opts.pop("dsn", None) or _environment(
                ctx, f"{where}.dsn_env", opts.pop("dsn_env")
            )
            if "password_env" in opts:
                opts["password"] = _environment(
                    ctx, f"{where}.password_env", opts.pop("password_env")
                )
            return src.PostgresSource(dsn, **opts)
        # database
        dsn = opts.get("dsn") or _environment(
            ctx, f"sources[{spec.index}].dsn_env", opts["dsn_env"]
        )
        password = (
            _environment(ctx, f"sources[{spec.index}].password_env", opts["password_env"])
            if "password_env" in opts
            else None
        )
        timeout = float(opts.get("timeout", 2.0))
        check = _DatabaseCheck(dsn, password, timeout, opts.get("query", "SELECT 1"))
        return src.CallableProbe(check, opts.get("metric", "db.latency_s"), timeout=timeout)
    except ConfigError as exc:
        raise ctx.rewrap(f"sources[{spec.index}]", exc) from None


# -- sinks --------------------------------------------------------------------------------


def _alerts_route(ctx: _Ctx, value: object, path: str) -> Severity | None:
    if value is False or value == "none":
        return None
    if isinstance(value, str) and value.lower() in _SEVERITIES:
        return _SEVERITIES[value.lower()]
    raise ctx.error(path, value, "a severity (low, medium, high, critical) or 'none'")


_DELIVERY: dict[str, Check] = {
    "timeout": _timeout,
    "max_attempts": _int(1),
    "backoff": _positive_duration,
    "backoff_max": _positive_duration,
}
_COMMON_SINK: dict[str, Check] = {"name": _str, "alerts": _alerts_route}
_SINK_SCHEMAS: dict[str, dict[str, Check]] = {
    "logging": {"logger": _str},
    "jsonl": {"path": _path, "max_bytes": _size, "backups": _int(0), "fsync": _bool},
    "webhook": {"url_env": _env_name, "secret_env": _env_name, **_DELIVERY},
    "slack": {
        "url_env": _env_name,
        "channel": _str,
        "username": _str,
        "icon_emoji": _str,
        **_DELIVERY,
    },
    "smtp": {
        "port": _port(1),
        "host": _host,
        "sender": _str,
        "recipients": _strings,
        "starttls": _bool,
        "ssl": _bool,
        "username": _str,
        "password_env": _env_name,
        "subject_prefix": _str,
        **_DELIVERY,
    },
    "prometheus": {"namespace": _str, "port": _port(0), "addr": _host},
}
_SINK_REQUIRED: dict[str, tuple[str, ...]] = {
    "jsonl": ("path",),
    "webhook": ("url_env",),
    "slack": ("url_env",),
    "smtp": ("sender", "recipients"),
}
# network sinks are alert routes unless told otherwise; the rest hear every event
_DEFAULT_ROUTE = {"slack": Severity.HIGH, "smtp": Severity.HIGH}
_SECRET_KEYS = ("url", "secret", "password", "token", "dsn_password")


def _sinks(ctx: _Ctx, value: object, *, env: bool) -> tuple[SinkSpec, ...]:
    specs = []
    for i, where, kind, options in _typed_tables(
        ctx, value, "sinks", _SINK_SCHEMAS, _SINK_REQUIRED, _COMMON_SINK, _SECRET_KEYS
    ):
        route = options.pop("alerts", _DEFAULT_ROUTE.get(kind))
        if env:
            for key in ("url_env", "secret_env", "password_env"):
                if key in options:
                    _environment(ctx, f"{where}.{key}", options[key])
        specs.append(SinkSpec(kind, options, route, i))
    return tuple(specs)


def _build_sink(
    ctx: _Ctx, spec: SinkSpec, clock: Clock | None, *, serve: bool = True
) -> tuple[Sink, Any]:
    """The sink, and something to close at the end (or None). ``serve=False`` starts no
    HTTP server (for checking a file)."""
    from wedguard import sinks

    opts = dict(spec.options)
    try:
        if spec.type == "logging":
            return sinks.LoggingSink(opts.pop("logger", "wedguard.events"), **opts), None
        if spec.type == "jsonl":
            jsonl = sinks.JsonlSink(opts.pop("path"), **opts)
            return jsonl, jsonl
        if spec.type == "webhook":
            hook = sinks.WebhookSink(clock=clock, **opts)
            return hook, hook
        if spec.type == "slack":
            slack = sinks.SlackSink(clock=clock, **opts)
            return slack, slack
        if spec.type == "smtp":
            opts["recipients"] = list(opts["recipients"])
            smtp = sinks.SmtpSink(clock=clock, **opts)
            return smtp, smtp
        # prometheus
        port = opts.pop("port", None)
        addr = opts.pop("addr", "127.0.0.1")
        prom = sinks.PrometheusSink(**opts)
        server = None
        if port is not None and serve:
            import prometheus_client

            try:
                server = prometheus_client.start_http_server(
                    port, addr=addr, registry=prom.registry
                )
            except OSError as exc:
                raise ctx.error(f"sinks[{spec.index}].port", port, f"a free port ({exc})") from None
        return prom, server
    except ConfigError as exc:
        if exc.field.startswith(ctx.file):
            raise
        raise ctx.rewrap(f"sinks[{spec.index}]", exc) from None


def _dry_run(
    ctx: _Ctx, sources: Sequence[SourceSpec], sinks: Sequence[SinkSpec], *, env: bool
) -> None:
    """Build every source and sink once, so what their constructors check is checked
    when the file is read. None of them does I/O before it is used (network sinks
    start their thread on the first event; no HTTP server is started here)."""
    for source in sources:
        if env or (
            source.type != "database" and not any(k.endswith("_env") for k in source.options)
        ):
            _build_source(ctx, source)
    for sink_spec in sinks:
        if not env and any(k.endswith("_env") for k in sink_spec.options):
            continue
        _sink, closer = _build_sink(ctx, sink_spec, None, serve=False)
        if closer is not None and callable(getattr(closer, "close", None)):
            with contextlib.suppress(Exception):
                closer.close()


# -- the configuration ---------------------------------------------------------------------


class Built:
    """A guard built from a :class:`Config`, with what must be closed after it.

    Use it as a context manager: on exit the guard is closed, the alert dispatcher
    flushed (up to ``flush_timeout`` seconds) and closed, the sinks and the history
    store closed.

    Attributes:
        guard: the :class:`~wedguard.Guard`.
        dispatcher: the :class:`~wedguard.AlertDispatcher`, when a sink takes alerts.
        history: the :class:`wedguard.history.HistorySink`, when ``[history]`` is set.

    Example::

        >>> config = Config.from_dict({"sources": [], "calendar": {"preset": "none"}})
        >>> with config.assemble(sinks=[]) as built:
        ...     with built.guard.session("photos") as s:
        ...         _ = s.throttle(1000)
        >>> s.report().bytes
        1000.0
    """

    def __init__(
        self, guard: Guard, dispatcher: AlertDispatcher | None, history: Any, closers: list[Any]
    ) -> None:
        self.guard = guard
        self.dispatcher = dispatcher
        self.history = history
        self._closers = closers

    def close(self, flush_timeout: float = 5.0) -> None:
        """Close the guard, then flush and close everything it feeds."""
        self.guard.close()
        if self.dispatcher is not None:
            self.dispatcher.close(timeout=flush_timeout)
        for item in self._closers:
            with contextlib.suppress(Exception):
                if hasattr(item, "shutdown"):  # a prometheus HTTP server
                    item.shutdown()
                elif isinstance(item, tuple):  # (server, thread) from prometheus_client
                    item[0].shutdown()
                else:
                    item.close()
        if self.history is not None:
            self.history.close()

    def __enter__(self) -> Built:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@attrs.frozen(slots=True, eq=False)
class Config:
    """The validated, effective configuration read from a ``wedguard.toml``.

    Build it with :func:`load_config`. Every section is filled in with its defaults,
    so :meth:`render` shows exactly what a guard built from it will do.

    Attributes:
        path: the file it was read from.
        guard: the ``[guard]`` settings.
        calendar: the calendar (None with ``preset = "none"``).
        thresholds: the impact :class:`~wedguard.Thresholds`.
        controller: ``kind`` and the parameters of the rate controller.
        sources: the ``[[sources]]`` entries (``[system]`` when the file has none;
            ``sources = []`` for none at all).
        sinks: the ``[[sinks]]`` entries (a logging sink when the file has none).
        alerts: the alert dispatcher's settings (group_wait, repeat_interval, ...).
        history: the ``[history]`` settings, or None.
        breaker: the circuit breaker's settings.
        redis: the ``[redis]`` settings (many hosts, one budget), or None.
        run: the ``[run]`` settings (commands run under the guard).
        sinks_given: False when the file has no ``sinks`` (the logging sink is then
            the default, which the command line leaves out: it shows events itself).

    Example::

        >>> config = Config.from_dict({"guard": {"rate": "5MB/s"}}, path="inline.toml")
        >>> config.guard.rate
        5000000.0
        >>> print(config.render().splitlines()[1])
        rate = "5 MB/s"
    """

    path: str
    guard: GuardSettings
    calendar: PeakHourCalendar | None
    thresholds: Thresholds
    controller: Mapping[str, Any]
    sources: tuple[SourceSpec, ...]
    sinks: tuple[SinkSpec, ...]
    alerts: Mapping[str, Any]
    history: Mapping[str, Any] | None
    breaker: Mapping[str, Any]
    redis: Mapping[str, Any] | None = None
    sinks_given: bool = True
    run: RunSettings = RunSettings()

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, path: str = "wedguard.toml", env: bool = True
    ) -> Config:
        """Validate a parsed TOML document (``path`` names it in errors).

        With ``env=False`` the environment variables that hold secrets are not
        required to be set (for checking a file on another machine).
        """
        ctx = _Ctx(path or "wedguard.toml")
        for key, value in data.items():
            if key not in _SECTIONS:
                raise ctx.error(key, value, "a known section (" + ", ".join(_SECTIONS) + ")")
        guard = GuardSettings(
            **_take(ctx, _table(ctx, data.get("guard", {}), "guard"), "guard", _GUARD_SCHEMA)
        )
        if "calendar" in data:
            calendar = _calendar(ctx, _table(ctx, data["calendar"], "calendar"))
        else:
            calendar = PeakHourCalendar.default(tz="UTC")
        thresholds = _thresholds(ctx, _table(ctx, data.get("thresholds", {}), "thresholds"))
        controller = _controller(ctx, _table(ctx, data.get("controller", {}), "controller"))
        sources = (
            _sources(ctx, data["sources"], env=env)
            if "sources" in data
            else (SourceSpec("system", {}, 0),)
        )
        sinks = (
            _sinks(ctx, data["sinks"], env=env)
            if "sinks" in data
            else (SinkSpec("logging", {}, None, 0),)
        )
        alerts = _take(ctx, _table(ctx, data.get("alerts", {}), "alerts"), "alerts", _ALERTS_SCHEMA)
        history = None
        if "history" in data:
            history = _take(
                ctx, _table(ctx, data["history"], "history"), "history", _HISTORY_SCHEMA
            )
            if "path" not in history:
                raise ctx.error("history.path", None, "the path of the history database")
            if history.get("retry", 1.0) > history.get("retry_max", 60.0):
                raise ctx.error(
                    "history.retry_max",
                    format_duration(history.get("retry_max", 60.0)),
                    f"at least history.retry ({format_duration(history.get('retry', 1.0))})",
                )
        breaker: dict[str, Any] = {"failure_threshold": 3, "recovery_timeout": 300.0}
        breaker.update(
            _take(ctx, _table(ctx, data.get("breaker", {}), "breaker"), "breaker", _BREAKER_SCHEMA)
        )
        try:
            CircuitBreaker("guard", **breaker)
        except ConfigError as exc:
            raise ctx.rewrap("breaker", exc) from None
        _dry_run(ctx, sources, sinks, env=env)
        redis = None
        if "redis" in data:
            redis = _redis(ctx, _table(ctx, data["redis"], "redis"), env=env)
        return cls(
            path=path,
            guard=guard,
            calendar=calendar,
            thresholds=thresholds,
            controller=controller,
            sources=sources,
            sinks=sinks,
            alerts=alerts,
            history=history,
            breaker=breaker,
            redis=redis,
            sinks_given="sinks" in data,
            run=RunSettings(
                **_take(ctx, _table(ctx, data.get("run", {}), "run"), "run", _RUN_SCHEMA)
            ),
        )

    # -- building the guard ---------------------------------------------------------------

    def build(self, *, clock: Clock | None = None, **overrides: Any) -> Guard:
        """A :class:`~wedguard.Guard` as the file describes (see :meth:`assemble`)."""
        return self.assemble(clock=clock, **overrides).guard

    def assemble(
        self,
        *,
        clock: Clock | None = None,
        extra_sinks: Sequence[Sink] = (),
        **overrides: Any,
    ) -> Built:
        """The guard with its dispatcher, history and closers, as a :class:`Built`.

        Args:
            clock: the clock for the guard and its policies (default: the system's).
            extra_sinks: more sinks that hear every event (the command line's).
            **overrides: Guard arguments that win over the file (``rate=``,
                ``stop_file=``, ``sources=``, ``sinks=``...). The history sink of
                ``[history]`` is kept even when ``sinks=`` is given.
        """
        ctx = _Ctx(self.path)
        closers: list[Any] = []
        try:
            direct: list[Sink] = []
            routes: dict[Severity, list[Sink]] = {}
            for spec in self.sinks:
                sink, closer = _build_sink(ctx, spec, clock)
                if closer is not None:
                    closers.append(closer)
                if spec.alerts is None:
                    direct.append(sink)
                else:
                    routes.setdefault(spec.alerts, []).append(sink)
            dispatcher = None
            if routes:
                dispatcher = AlertDispatcher(routes=routes, clock=clock, **self.alerts)
                direct.append(dispatcher)
            history = None
            sources = [_build_source(ctx, spec) for spec in self.sources]
            if self.history is not None:
                from wedguard.history import HistorySink

                history = HistorySink(
                    self.history["path"],
                    alerts=dispatcher,
                    **{k: v for k, v in self.history.items() if k != "path"},
                )
                direct.append(history)
                sources = [history.source(s) for s in sources]
            coordinator = None
            if self.redis is not None:
                coordinator = self.coordinator(clock=clock, sinks=())
                closers.append(coordinator)
            kind = self.controller["kind"]
            params = {k: v for k, v in self.controller.items() if k != "kind"}
            g = self.guard
            kwargs: dict[str, Any] = {
                "rate": g.rate,
                "calendar": self.calendar,
                "breaker": (
                    CircuitBreaker("guard", clock=clock, **self.breaker)
                    if coordinator is None
                    else None
                ),
                "analyzer": ImpactAnalyzer(self.thresholds, clock=clock) if sources else None,
                "sources": sources,
                "sinks": [*direct, *extra_sinks],
                "max_concurrent": g.max_concurrent,
                "stop_file": g.stop_file,
                "clock": clock,
                "controller": _CONTROLLERS[kind](**params),
                "ops_rate": g.ops_rate,
                "sample_interval": g.sample_interval,
                "stop_check_interval": g.stop_check_interval,
                "slot_timeout": g.slot_timeout,
                "control_socket": g.control_socket,
                "nice": g.nice,
                "ionice": g.ionice,
            }
            if coordinator is not None:
                # the breaker keeps its state in Redis, shared by the fleet
                name = self.redis.get("name", "guard") if self.redis else "guard"
                kwargs["breaker"] = CircuitBreaker(
                    "guard",
                    clock=getattr(coordinator, "clock", clock),
                    storage=coordinator.breaker_storage(name),
                    **self.breaker,
                )
                kwargs["coordinator"] = coordinator
                kwargs["name"] = name
            if "sinks" in overrides and history is not None:
                overrides = {**overrides, "sinks": [*overrides["sinks"], history]}
            kwargs.update(overrides)
            if "sources" in overrides and "analyzer" not in overrides:
                kwargs["analyzer"] = (
                    ImpactAnalyzer(self.thresholds, clock=clock) if overrides["sources"] else None
                )
            try:
                guard = Guard(**kwargs)
            except ConfigError as exc:
                raise ctx.rewrap("guard", exc) from None
        except BaseException:
            for item in closers:
                with contextlib.suppress(Exception):
                    item.close() if hasattr(item, "close") else item[0].shutdown()
            raise
        return Built(guard, dispatcher, history, closers)

    def coordinator(self, *, clock: Clock | None = None, sinks: Sequence[Sink] = ()) -> Any:
        """The :class:`wedguard.distributed.RedisCoordinator` of ``[redis]``.

        Raises:
            ConfigError: the file has no ``[redis]`` section, or its URL's variable is
                not set.
        """
        ctx = _Ctx(self.path)
        if self.redis is None:
            raise ConfigError(f"{self.path}: redis", None, "a [redis] section")
        from wedguard.distributed import RedisCoordinator

        opts = dict(self.redis)
        url = opts.pop("url", None) or _environment(ctx, "redis.url_env", opts["url_env"])
        opts.pop("url_env", None)
        opts.pop("name", None)
        try:
            return RedisCoordinator(url, sinks=sinks, clock=clock, **opts)
        except ConfigError as exc:
            raise ctx.rewrap("redis", exc) from None

    # -- showing it -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The effective configuration as plain TOML-friendly values, secrets redacted.

        Rates, sizes and durations are written the way a person would (``"50 MB/s"``,
        ``"5m"``); environment variables are named, never read into the output.
        """
        g = self.guard
        guard: dict[str, Any] = {
            "rate": format_rate(g.rate) if g.rate < math.inf else "off",
            "max_concurrent": "off" if g.max_concurrent is None else g.max_concurrent,
        }
        if g.stop_file is not None:
            guard["stop_file"] = g.stop_file
        guard["ops_rate"] = "off" if g.ops_rate is None else f"{g.ops_rate:g}/s"
        guard["sample_interval"] = format_duration(g.sample_interval)
        guard["stop_check_interval"] = format_duration(g.stop_check_interval)
        guard["slot_timeout"] = (
            "forever" if g.slot_timeout is None else format_duration(g.slot_timeout)
        )
        if g.control_socket is not None:
            guard["control_socket"] = g.control_socket
        if g.nice:
            guard["nice"] = g.nice
        if g.ionice:
            guard["ionice"] = True
        th = self.thresholds
        thresholds: dict[str, Any] = {}
        for name in _THRESHOLD_FIELDS:
            value = getattr(th, name)
            if value is None:
                thresholds[name] = "off"
            elif name in ("api_latency", "db_latency"):
                thresholds[name] = f"{value * 100:g}%"
            elif name == "backup_cpu":
                thresholds[name] = f"{value:g}%"
            elif name == "backup_memory":
                thresholds[name] = format_size(value).replace(" ", "")
            else:
                thresholds[name] = format_rate(value)
        if th.relative:
            thresholds["relative"] = dict(th.relative)
        if th.absolute:
            thresholds["absolute"] = dict(th.absolute)
        thresholds["critical"] = th.critical
        if th.per_level:
            thresholds["per_level"] = {
                Level(level).name.lower(): {k: "off" if v is None else v for k, v in over.items()}
                for level, over in th.per_level.items()
            }
        out: dict[str, Any] = {
            "guard": guard,
            "calendar": _calendar_dict(self.calendar),
            "thresholds": thresholds,
            "controller": dict(self.controller),
            "breaker": {
                "failure_threshold": self.breaker["failure_threshold"],
                "recovery_timeout": format_duration(self.breaker["recovery_timeout"]),
                **{
                    k: v
                    for k, v in self.breaker.items()
                    if k not in ("failure_threshold", "recovery_timeout")
                },
            },
            "alerts": {
                k: (
                    "off"
                    if v is None
                    else format_duration(v)
                    if isinstance(v, float)
                    else list(v)
                    if isinstance(v, tuple)
                    else v
                )
                for k, v in self.alerts.items()
            },
            "sources": [{"type": s.type, **_redacted(s.options)} for s in self.sources],
            "sinks": [
                {
                    "type": s.type,
                    **_redacted(s.options),
                    "alerts": "none" if s.alerts is None else s.alerts.name.lower(),
                }
                for s in self.sinks
            ],
        }
        if self.redis is not None:
            out["redis"] = _redacted(self.redis)
        out["run"] = {"on_guard_death": self.run.on_guard_death}
        if self.history is not None:
            out["history"] = {
                k: format_duration(v) if isinstance(v, float) else v
                for k, v in self.history.items()
            }
        return out

    def render(self) -> str:
        """The effective configuration as TOML text, secrets redacted.

        Environment variables that hold secrets are shown by name with whether they
        are set, never with their value.
        """
        return _toml(self.to_dict())

    def secrets(self) -> dict[str, bool]:
        """The environment variables this configuration reads secrets from, and
        whether each is set now."""
        names: dict[str, bool] = {}
        options = [s.options for s in self.sources] + [s.options for s in self.sinks]
        if self.redis is not None:
            options.append(self.redis)
        for opts in options:
            for key, value in opts.items():
                if key.endswith("_env"):
                    names[value] = bool(os.environ.get(value))
        return names


def _redacted(options: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, str) and "://" in value:
            value = _redact_url(value)
        if not key.endswith("_env") and any(s in key for s in ("password", "secret", "token")):
            value = "***"
        out[key] = value
    return out


# -- a small TOML writer for render() ---------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if "\n" in value:
            body = value.replace("\\", "\\\\").replace('"""', '\\"""')
            return f'"""\n{body}\n"""'
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
        )
    return _toml_value(str(value))


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _toml(data: Mapping[str, Any]) -> str:
    """Tables first, then arrays of tables; empty arrays as top-level keys before both
    (a key written after a table header would belong to that table)."""
    lines: list[str] = [f"{section} = []" for section, body in data.items() if body == []]
    if lines:
        lines.append("")
    for section, body in data.items():
        if isinstance(body, Mapping):
            lines.append(f"[{section}]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items())
            lines.append("")
    for section, body in data.items():
        if isinstance(body, list):
            for entry in body:
                lines.append(f"[[{section}]]")
                lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items())
                lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


# -- entry points -----------------------------------------------------------------------


def _read(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    name = _checks.path(path, "config", "a configuration file path")
    try:
        with open(name, "rb") as f:
            return name, tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(name, name, "an existing configuration file") from None
    except IsADirectoryError:
        raise ConfigError(name, name, "a file, not a directory") from None
    except OSError as exc:
        raise ConfigError(name, name, f"a readable file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise ConfigError(
            name, bad, f"UTF-8 text (byte {exc.start} is not: a TOML file is UTF-8)"
        ) from None


def load_config(path: str | os.PathLike[str], *, env: bool = True) -> Config:
    """Read and validate ``path``: the effective :class:`Config`.

    Args:
        path: the TOML file.
        env: require the environment variables that hold secrets to be set (default).

    Example::

        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "wedguard.toml")
        >>> with open(path, "w") as f:
        ...     _ = f.write('[guard]\\nrate = "10 parsecs"\\n')
        >>> load_config(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        wedguard.errors.ConfigError: .../wedguard.toml: guard.rate: '10 parsecs' is not valid; expected a rate such as '10MB/s', ...

    Raises:
        ConfigError: naming the file, the key path and what was expected.
    """
    name, data = _read(path)
    return Config.from_dict(data, path=name, env=env)


def load(path: str | os.PathLike[str], *, clock: Clock | None = None, **overrides: Any) -> Guard:
    """Read ``path`` and build the :class:`~wedguard.Guard` it describes.

    >>> import os, tempfile
    >>> from pathlib import Path
    >>> path = os.path.join(tempfile.mkdtemp(), "wedguard.toml")
    >>> _ = Path(path).write_text('[guard]\\nrate = "5MB/s"\\n[calendar]\\npreset = "none"\\n')
    >>> guard = load(path, sources=[], sinks=[])
    >>> guard.decision().rate
    5000000.0

    Raises:
        ConfigError: naming the file, the key path and what was expected.
    """
    return load_config(path).build(clock=clock, **overrides)
