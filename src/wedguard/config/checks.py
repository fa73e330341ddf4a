"""The configuration file's validators: each takes ``(ctx, value, path)`` and returns
the value normalised, or raises a :class:`~wedguard.ConfigError` naming the file, the
key path and what was expected.

Example::

    >>> ctx = Context("wedguard.toml")
    >>> check_duration(ctx, "1h30m", "alerts.group_wait")
    5400.0
    >>> check_duration(ctx, "soon", "alerts.group_wait")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wedguard.errors.ConfigError: wedguard.toml: alerts.group_wait: 'soon' is not valid; expected a duration such as '30s', ...
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from wedguard import _checks, _fs
from wedguard.errors import ConfigError
from wedguard.io.priority import check_cpus, check_nice
from wedguard.redact import redact_url, url_has_secret
from wedguard.runtime.alerts import Severity
from wedguard.runtime.defaults import MAX_INTERVAL, MAX_SLOT_TIMEOUT, MIN_INTERVAL, MIN_RATE
from wedguard.units import (
    parse_duration,
    parse_rate,
    parse_size,
)

_RATE_WHAT = "a rate such as '10MB/s', '10Mbit/s', '512KiB/s' or 'off'"


_DURATION_WHAT = "a duration such as '30s', '5m', '1h30m' or a number of seconds"


_SIZE_WHAT = "a size such as '500MB', '512KiB' or a number of bytes"


#: the longest duration a file may give: ten years (thread waits and sockets refuse
#: values beyond what the platform's time_t holds)
MAX_DURATION = 10 * 365 * 86400.0


_SEVERITIES = {s.name.lower(): s for s in Severity}


class Context:
    """Where errors are reported: the file's name, prefixed to every key path."""

    __slots__ = ("file",)

    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, path: str, value: object, expected: str) -> ConfigError:
        return ConfigError(f"{self.file}: {path}", value, expected)

    def rewrap(self, prefix: str, exc: ConfigError) -> ConfigError:
        """A library's ConfigError (field ``rate``) as ``file: prefix.rate``."""
        field = exc.field
        if field.startswith(f"{self.file}: "):  # already ours (an environment variable's)
            return exc
        if not exc.expected and exc.value is None:  # a free-form message
            return ConfigError(f"{self.file}: {prefix}: {exc}")
        if field.startswith(f"{prefix}.") or field == prefix:
            path = field
        elif field:
            path = f"{prefix}.{field}" if not field.startswith("line ") else f"{prefix}: {field}"
        else:
            path = prefix
        return ConfigError(f"{self.file}: {path}", exc.value, exc.expected)


Check = Callable[[Context, object, str], Any]


def check_str(ctx: Context, value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ctx.error(path, value, "a non-empty string")
    return value


def check_bool(ctx: Context, value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(path, value, "true or false")
    return value


_INT_MAX = 2**31 - 1


def check_int(minimum: int) -> Check:
    def check(ctx: Context, value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ctx.error(path, value, f"a whole number >= {minimum}")
        if value > _INT_MAX:
            raise ctx.error(path, value, f"a whole number from {minimum} to {_INT_MAX}")
        return value

    return check


def check_number(ctx: Context, value: object, path: str) -> float:
    try:
        number = _checks.real(value, path, "a number")
    except ConfigError:
        raise ctx.error(path, value, "a number") from None
    if not math.isfinite(number):
        raise ctx.error(path, value, "a number")
    return number


def _rate(ctx: Context, value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ctx.error(path, value, _RATE_WHAT)
    try:
        rate = parse_rate(value)
    except ConfigError:
        raise ctx.error(path, value, _RATE_WHAT) from None
    if not rate > 0:
        raise ctx.error(path, value, "a rate > 0 ('off' for unlimited)")
    return rate


def check_duration(ctx: Context, value: object, path: str) -> float:
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


def check_size(ctx: Context, value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ctx.error(path, value, _SIZE_WHAT)
    try:
        return parse_size(value)
    except ConfigError:
        raise ctx.error(path, value, _SIZE_WHAT) from None


def check_strings(ctx: Context, value: object, path: str) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return (value,)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ctx.error(path, value, "a string or a non-empty list of strings")
    return tuple(value)


def check_env_name(ctx: Context, value: object, path: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ctx.error(
            path, value, "the name of an environment variable, e.g. 'SLACK_WEBHOOK_URL'"
        )
    return value


def check_path(ctx: Context, value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ctx.error(path, value, "a file path")
    try:
        return _checks.path(os.path.expanduser(value), path)
    except ConfigError as exc:
        raise ctx.error(path, value, exc.expected) from None


def check_stop_file(ctx: Context, value: object, path: str) -> str:
    """A stop file's path, in a directory nobody else controls (what ``Guard`` would
    refuse at run time, ``config check`` refuses now; a directory that does not exist
    yet passes, as it does for the guard)."""
    full = check_path(ctx, value, path)
    try:
        _fs.check_stop_location(full, field=path)
    except ConfigError as exc:
        raise ctx.error(path, value, exc.expected) from None
    return full


def check_socket_path(ctx: Context, value: object, path: str) -> str:
    full = check_path(ctx, value, path)
    try:
        return _checks.socket_path(full, path)
    except ConfigError as exc:
        raise ctx.error(path, value, exc.expected) from None


def check_port(low: int) -> Check:
    def check(ctx: Context, value: object, path: str) -> int:
        try:
            return _checks.port(value, path, low=low)
        except ConfigError as exc:
            raise ctx.error(path, value, exc.expected) from None

    return check


def check_host(ctx: Context, value: object, path: str) -> str:
    text = check_str(ctx, value, path)
    if any(c.isspace() or c in "\x00/@" for c in text):
        raise ctx.error(path, value, "a host name or an IP address")
    return text


def check_table(ctx: Context, value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ctx.error(path, value, "a table")
    return value


def take(
    ctx: Context, table: Mapping[str, Any], path: str, schema: Mapping[str, Check]
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


def check_on_guard_death(ctx: Context, value: object, path: str) -> str:
    if value not in ("auto", "resume", "terminate", "off"):
        raise ctx.error(path, value, "'auto', 'resume', 'terminate' or 'off'")
    return str(value)


def check_max_concurrent(ctx: Context, value: object, path: str) -> int | None:
    if value in ("off", "unlimited"):
        return None
    return check_int(1)(ctx, value, path)  # type: ignore[no-any-return]


def _opt_rate(ctx: Context, value: object, path: str) -> float | None:
    rate = _rate(ctx, value, path)
    return None if rate == math.inf else rate


def check_guard_rate(ctx: Context, value: object, path: str) -> float:
    rate = _rate(ctx, value, path)
    if rate < MIN_RATE:
        raise ctx.error(path, value, f"a rate >= {MIN_RATE:g}/s ('off' for unlimited)")
    return rate


def check_guard_opt_rate(ctx: Context, value: object, path: str) -> float | None:
    rate = check_guard_rate(ctx, value, path)
    return None if rate == math.inf else rate


def check_interval(ctx: Context, value: object, path: str) -> float:
    seconds = check_duration(ctx, value, path)
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise ctx.error(path, value, "a duration from 1ms to 1 day")
    return seconds


def check_slot_timeout(ctx: Context, value: object, path: str) -> float | None:
    seconds = check_opt_duration(ctx, value, path)
    if seconds is not None and seconds > MAX_SLOT_TIMEOUT:
        raise ctx.error(path, value, "a duration of at most 30 days, or 'forever'")
    return seconds


def check_max_hold(ctx: Context, value: object, path: str) -> float | None:
    seconds = check_opt_duration(ctx, value, path)
    if seconds is not None and not 0 < seconds <= MAX_SLOT_TIMEOUT:
        raise ctx.error(path, value, "a duration over 0 of at most 30 days, or 'forever'")
    return seconds


def check_opt_duration(ctx: Context, value: object, path: str) -> float | None:
    if value in ("off", "forever", "none"):
        return None
    return check_duration(ctx, value, path)


def check_cores(ctx: Context, value: object, path: str) -> int | tuple[int, ...] | str:
    """``backend_cpus``: a number of cores >= 1, a list of CPU numbers this process may
    use, ``"all-but-one"`` or ``"all"``."""
    return _cores(ctx, value, path, "")


def check_guard_cores(ctx: Context, value: object, path: str) -> int | tuple[int, ...] | str:
    """``[guard] cpus``: as :func:`check_cores`, or ``"auto"``."""
    return "auto" if value == "auto" else _cores(ctx, value, path, "'auto', ")


def _cores(ctx: Context, value: object, path: str, auto: str) -> int | tuple[int, ...] | str:
    what = "a number of cores >= 1, a list of CPU numbers, 'all-but-one' or 'all'"
    try:
        check_cpus(value, expected=auto + what)
    except ConfigError as exc:
        raise ctx.error(path, value, exc.expected) from None
    if isinstance(value, (int, str)):
        return value
    return tuple(value)  # type: ignore[arg-type]


def check_niceness(ctx: Context, value: object, path: str) -> int:
    try:
        return check_nice(value)
    except ConfigError as exc:
        raise ctx.error(path, value, exc.expected) from None


def check_positive_duration(ctx: Context, value: object, path: str) -> float:
    seconds = check_duration(ctx, value, path)
    if seconds <= 0:
        raise ctx.error(path, value, "a duration > 0")
    return seconds


def check_duration_or_off(ctx: Context, value: object, path: str) -> float | bool:
    """A duration > 0, or ``false``: off (kept as False, so that it renders back)."""
    if value is False:
        return False
    if value is True:
        raise ctx.error(path, value, "a duration > 0 such as '50ms', or false")
    return check_positive_duration(ctx, value, path)


def check_share(ctx: Context, value: object, path: str) -> float:
    number = check_number(ctx, value, path)
    if not 0 < number <= 1:
        raise ctx.error(path, value, "a share above 0 and at most 1, e.g. 0.25")
    return number


def check_timeout(ctx: Context, value: object, path: str) -> float:
    seconds = check_number(ctx, value, path)
    if not 0 < seconds <= _checks.MAX_TIMEOUT:
        raise ctx.error(path, value, f"seconds > 0 and <= {_checks.MAX_TIMEOUT:g}")
    return seconds


def check_url(ctx: Context, value: object, path: str) -> str:
    if not isinstance(value, str) or split_url(value).scheme not in ("http", "https"):
        raise ctx.error(path, value, "an http:// or https:// URL")
    if url_has_secret(value):
        raise ctx.error(path, redact_url(value), "a URL without a password in it")
    return value


def check_cgroup(ctx: Context, value: object, path: str) -> bool | str:
    if isinstance(value, bool):
        return value
    return check_path(ctx, value, path)


def check_fraction(ctx: Context, value: object, path: str) -> float:
    number = check_number(ctx, value, path)
    if not 0 < number < 1:
        raise ctx.error(path, value, "a fraction between 0 and 1, e.g. 0.95")
    return number


def check_labels(ctx: Context, value: object, path: str) -> dict[str, str]:
    table = check_table(ctx, value, path)
    for k, v in table.items():
        if not isinstance(v, str):
            raise ctx.error(f"{path}.{k}", v, "a string")
    return dict(table)


def check_resources(ctx: Context, value: object, path: str) -> tuple[str, ...]:
    items = check_strings(ctx, value, path)
    for item in items:
        if item not in ("cpu", "io", "memory"):
            raise ctx.error(path, value, "some of 'cpu', 'io', 'memory'")
    return items


def split_url(url: str) -> urllib.parse.SplitResult:
    """``urlsplit`` that reads a malformed URL (``http://[::1``) as having no scheme."""
    try:
        return urllib.parse.urlsplit(url)
    except ValueError:
        return urllib.parse.SplitResult("", "", "", "", "")


def environment(ctx: Context, path: str, name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ctx.error(path, name, "the name of a set, non-empty environment variable")
    return value


def check_alerts_route(ctx: Context, value: object, path: str) -> Severity | None:
    if value is False or value == "none":
        return None
    if isinstance(value, str) and value.lower() in _SEVERITIES:
        return _SEVERITIES[value.lower()]
    raise ctx.error(path, value, "a severity (low, medium, high, critical) or 'none'")
