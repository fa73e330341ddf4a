"""The sections of a ``wedguard.toml`` and their schemas: ``[guard]``, ``[run]``,
``[calendar]``, ``[thresholds]``, ``[controller]``, ``[breaker]``, ``[alerts]``,
``[history]`` and ``[redis]``. Missing keys take the guard's defaults
(:mod:`wedguard.runtime.defaults`)."""

from __future__ import annotations

import importlib
import inspect
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from wedguard import _checks
from wedguard.config.checks import (
    Check,
    Context,
    check_bool,
    check_duration,
    check_env_name,
    check_guard_cores,
    check_guard_opt_rate,
    check_guard_rate,
    check_int,
    check_interval,
    check_max_concurrent,
    check_max_hold,
    check_niceness,
    check_number,
    check_on_guard_death,
    check_opt_duration,
    check_path,
    check_positive_duration,
    check_share,
    check_slot_timeout,
    check_socket_path,
    check_stop_file,
    check_str,
    check_strings,
    check_table,
    check_timeout,
    environment,
    split_url,
    take,
)
from wedguard.errors import ConfigError
from wedguard.levels import Level
from wedguard.policy.breaker import CircuitBreaker
from wedguard.policy.calendar import PeakHourCalendar
from wedguard.policy.controllers import AIMDController, LedbatController
from wedguard.policy.impact import Thresholds
from wedguard.redact import redact_url, url_has_secret
from wedguard.runtime.alerts import Severity
from wedguard.runtime.defaults import (
    BREAKER_FAILURE_THRESHOLD,
    BREAKER_RECOVERY_TIMEOUT,
    CPUS,
    IONICE,
    MAX_CONCURRENT,
    MAX_HOLD,
    NICE,
    RATE,
    SAMPLE_INTERVAL,
    STOP_CHECK_INTERVAL,
)
from wedguard.units import format_duration

SECTIONS = (
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
        max_hold: seconds a session is held back for production's sake (an impact HALT,
            a probe that never answers) before it ends with ``HoldTimeout`` (None:
            forever).
        control_socket: serve the live control plane on this Unix socket, or None.
        nice: niceness added to a thread while it runs a session (0: none).
        ionice: a thread running a session is in the idle I/O class.
        cpus: the cores a session's thread and a ``wedguard run`` command are
            confined to: ``"auto"`` (the default: a command on every core but the
            first, where there are two or more; a session's thread where it is),
            ``"all-but-one"``, a count, CPU numbers, or ``"all"`` (not confined).
    """

    rate: float = RATE
    max_concurrent: int | None = MAX_CONCURRENT
    stop_file: str | None = None
    ops_rate: float | None = None
    sample_interval: float = SAMPLE_INTERVAL
    stop_check_interval: float = STOP_CHECK_INTERVAL
    slot_timeout: float | None = None
    max_hold: float | None = MAX_HOLD
    control_socket: str | None = None
    nice: int = NICE
    ionice: bool = IONICE
    cpus: int | tuple[int, ...] | str | None = CPUS


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


RUN_SCHEMA: dict[str, Check] = {"on_guard_death": check_on_guard_death}


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


GUARD_SCHEMA: dict[str, Check] = {
    "rate": check_guard_rate,
    "max_concurrent": check_max_concurrent,
    "stop_file": check_stop_file,
    "ops_rate": check_guard_opt_rate,
    "sample_interval": check_interval,
    "stop_check_interval": check_interval,
    "slot_timeout": check_slot_timeout,
    "max_hold": check_max_hold,
    "control_socket": check_socket_path,
    "nice": check_niceness,
    "ionice": check_bool,
    "cpus": check_guard_cores,
}


_PRESETS = ("default", "wedding_platform", "none")


def parse_calendar(ctx: Context, table: Mapping[str, Any]) -> PeakHourCalendar | None:
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


THRESHOLD_FIELDS = ("api_latency", "db_latency", "backup_cpu", "backup_memory", "backup_network")


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


def parse_thresholds(ctx: Context, table: Mapping[str, Any]) -> Thresholds:
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key in THRESHOLD_FIELDS:
            kwargs[key] = _threshold_value(key, value)
        elif key in ("relative", "absolute"):
            kwargs[key] = dict(check_table(ctx, value, f"thresholds.{key}"))
        elif key == "critical":
            kwargs[key] = check_number(ctx, value, "thresholds.critical")
        elif key == "per_level":
            levels = check_table(ctx, value, "thresholds.per_level")
            per: dict[Level, dict[str, Any]] = {}
            for name, over in levels.items():
                if not isinstance(name, str) or name.upper() not in Level.__members__:
                    raise ctx.error(
                        f"thresholds.per_level.{name}", over, "a level: open, peak or blackout"
                    )
                over = check_table(ctx, over, f"thresholds.per_level.{name}")
                per[Level[name.upper()]] = {k: _threshold_value(k, v) for k, v in over.items()}
            kwargs[key] = per
        else:
            known = ", ".join((*THRESHOLD_FIELDS, "absolute", "critical", "per_level", "relative"))
            raise ctx.error(f"thresholds.{key}", value, f"a known key ({known})")
    try:
        return Thresholds(**kwargs)
    except ConfigError as exc:
        raise ctx.rewrap("thresholds", exc) from None


CONTROLLERS: dict[str, type[Any]] = {"aimd": AIMDController, "ledbat": LedbatController}


def _parameters(cls: type[Any], skip: Sequence[str] = ()) -> list[str]:
    """The keyword parameters of ``cls.__init__`` a file may set."""
    params = inspect.signature(cls.__init__).parameters
    return [
        n
        for n, p in params.items()
        if n != "self" and n not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]


def parse_controller(ctx: Context, table: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(table)
    kind = data.pop("kind", "aimd")
    if not isinstance(kind, str) or kind not in CONTROLLERS:
        raise ctx.error("controller.kind", kind, "'aimd' or 'ledbat'")
    cls = CONTROLLERS[kind]
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


BREAKER_SCHEMA: dict[str, Check] = {
    "failure_threshold": check_int(1),
    "recovery_timeout": check_positive_duration,
    "half_open_max_calls": check_int(1),
    "success_threshold": check_int(1),
}


ALERTS_SCHEMA: dict[str, Check] = {
    "group_by": lambda ctx, v, p: () if v == [] else check_strings(ctx, v, p),
    "group_wait": check_duration,
    "group_interval": check_duration,
    "repeat_interval": check_positive_duration,
    "escalate_after": check_opt_duration,
    "spool": check_path,
    "max_attempts": check_int(1),
    "backoff": check_positive_duration,
    "backoff_max": check_positive_duration,
}


HISTORY_SCHEMA: dict[str, Check] = {
    "path": check_path,
    "retention": check_positive_duration,
    "session_retention": check_positive_duration,
    "backlog": check_int(1),
    "retry": check_positive_duration,
    "retry_max": check_positive_duration,
}


_REDIS_SCHEMA: dict[str, Check] = {
    "url": check_str,
    "url_env": check_env_name,
    "prefix": check_str,
    "name": check_str,
    "fallback_share": check_share,
    "fallback_slots": check_int(0),
    "timeout": check_timeout,
    "probe_interval": check_timeout,
}


def parse_redis(ctx: Context, table: Mapping[str, Any], *, env: bool) -> dict[str, Any]:
    """Check ``[redis]``: one URL (in the file without a password, or from the
    environment), and redis-py installed."""
    options = take(ctx, table, "redis", _REDIS_SCHEMA)
    if ("url" in options) == ("url_env" in options):
        raise ctx.error("redis.url", None, "exactly one of url or url_env")
    url = options.get("url")
    if url is not None and url_has_secret(url):
        raise ctx.error("redis.url", redact_url(url), "a URL without a password (use url_env)")
    field = "redis.url"
    if url is None and env:
        url = environment(ctx, "redis.url_env", options["url_env"])
        field = "redis.url_env"
    if url is not None and split_url(url).scheme not in ("redis", "rediss", "unix"):
        raise ctx.error(field, redact_url(url), "a redis://, rediss:// or unix:// URL")
    try:
        redis = importlib.import_module("redis")
    except ImportError:
        raise ctx.error(
            "redis", "redis", "redis-py installed (pip install 'wedguard[redis]')"
        ) from None
    if url is not None:
        _redis_url(ctx, field, url, redis)
    return options


def _redis_url(ctx: Context, field: str, url: str, redis: Any) -> None:
    """What redis-py would refuse when it connects: a bad port, a malformed host, a
    NUL in a socket path, an option it does not know the value of."""
    shown = redact_url(url)
    parts = split_url(url)
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


def parse_history(ctx: Context, table: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``[history]``: a path, and ``retry`` no longer than ``retry_max``."""
    history = take(ctx, table, "history", HISTORY_SCHEMA)
    if "path" not in history:
        raise ctx.error("history.path", None, "the path of the history database")
    if history.get("retry", 1.0) > history.get("retry_max", 60.0):
        raise ctx.error(
            "history.retry_max",
            format_duration(history.get("retry_max", 60.0)),
            f"at least history.retry ({format_duration(history.get('retry', 1.0))})",
        )
    return history


def parse_breaker(ctx: Context, table: Mapping[str, Any]) -> dict[str, Any]:
    """``[breaker]`` over the guard's defaults, checked by building the breaker."""
    breaker: dict[str, Any] = {
        "failure_threshold": BREAKER_FAILURE_THRESHOLD,
        "recovery_timeout": BREAKER_RECOVERY_TIMEOUT,
    }
    breaker.update(take(ctx, table, "breaker", BREAKER_SCHEMA))
    try:
        CircuitBreaker("guard", **breaker)
    except ConfigError as exc:
        raise ctx.rewrap("breaker", exc) from None
    return breaker
