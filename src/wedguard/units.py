"""Parsing rates, sizes and durations from the text people write.

>>> parse_rate("10MB/s")
10000000.0
>>> parse_rate("10Mbit/s")
1250000.0
>>> parse_rate("1MiB/s")
1048576.0
>>> parse_size("512KiB")
524288
>>> parse_duration("1h30m")
5400.0

Sizes use SI prefixes for powers of 1000 (``kB``, ``MB``, ``GB``) and IEC prefixes for
powers of 1024 (``KiB``, ``MiB``, ``GiB``). ``B`` is a byte; ``b``, ``bit`` and the
``bps`` family are bits (eight to the byte). A bare number is bytes. Every malformed
input raises :class:`~wedguard.errors.ConfigError` quoting the text.
"""

from __future__ import annotations

import math
import re

from wedguard.errors import ConfigError

__all__ = [
    "format_duration",
    "format_rate",
    "format_size",
    "parse_duration",
    "parse_rate",
    "parse_size",
]

_NUMBER = r"(?P<num>[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?)"

_PREFIX = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "KI": 2**10,
    "ki": 2**10,
    "Mi": 2**20,
    "MI": 2**20,
    "Gi": 2**30,
    "GI": 2**30,
    "Ti": 2**40,
    "TI": 2**40,
    "Pi": 2**50,
    "PI": 2**50,
    "Ei": 2**60,
    "EI": 2**60,
}

# prefix + "B" (bytes) or prefix + "b"/"bit"/"bits" (bits)
_SIZE_UNIT = re.compile(
    r"(?P<prefix>[kKMGTPE]i?|[KMGTPE]I|ki)?"
    r"(?P<base>B|bytes?|b|bits?)?$",
)

_PER = {
    "": 1.0,
    "/s": 1.0,
    "/sec": 1.0,
    "/second": 1.0,
    "ps": 1.0,
    "/m": 1 / 60,
    "/min": 1 / 60,
    "/minute": 1 / 60,
    "/h": 1 / 3600,
    "/hr": 1 / 3600,
    "/hour": 1 / 3600,
    "/d": 1 / 86400,
    "/day": 1 / 86400,
}

_UNLIMITED = frozenset({"off", "unlimited", "inf", "infinity", "none", "max"})

_RATE_EXPECTED = (
    "a rate such as '10MB/s', '512KiB/s', '10Mbit/s', '10Mbps', '100/min' or 'off'/'unlimited'"
)
_SIZE_EXPECTED = "a size such as '512KiB', '10MB', '1GiB', '8Mbit' or a number of bytes"
_DURATION_EXPECTED = "a duration such as '90s', '1h30m', '2d', '250ms' or a number of seconds"


def _number(text: str, field: str, value: object, expected: str) -> float:
    try:
        number = float(text.replace("_", ""))
    except ValueError:
        raise ConfigError(field, value, expected) from None
    if not math.isfinite(number):
        raise ConfigError(field, value, expected)
    return number


def _size_factor(unit: str, field: str, value: object, expected: str) -> float:
    """Bytes per one of ``unit`` (e.g. 'MiB' -> 2**20, 'Mbit' -> 125000)."""
    match = _SIZE_UNIT.match(unit)
    if match is None:
        raise ConfigError(field, value, expected)
    prefix = match["prefix"] or ""
    base = match["base"] or ""
    if prefix and not base and prefix in ("k", "K", "M", "G", "T", "P", "E"):
        # "10M" alone: bytes, as dd, rsync and rclone read it
        base = "B"
    factor = float(_PREFIX[prefix])
    if base.startswith("b") and base not in ("byte", "bytes"):
        factor /= 8.0
    return factor


def _check_real(value: object, field: str, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, value, expected)
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float: 10**400
        raise ConfigError(field, value, expected) from None
    if math.isnan(number) or number < 0:
        raise ConfigError(field, value, expected)
    return number


def parse_rate(value: str | float, *, field: str = "rate") -> float:
    """Parse a rate into units (bytes, unless the unit says otherwise) per second.

    Accepts a number (returned as a float), ``"off"``/``"unlimited"`` (``math.inf``),
    or text: a number, an optional size unit and an optional ``/s``, ``ps``,
    ``/min``, ``/h`` or ``/day``.

    >>> parse_rate("10Mbps")
    1250000.0
    >>> parse_rate("100/min")
    1.6666666666666667
    >>> parse_rate("off")
    inf

    Raises:
        ConfigError: the text is not a rate, or the rate is negative.
    """
    if not isinstance(value, str):
        return _check_real(value, field, _RATE_EXPECTED)
    text = value.strip()
    if text.lower() in _UNLIMITED:
        return math.inf
    match = re.fullmatch(_NUMBER + r"\s*(?P<rest>.*)", text)
    if match is None:
        raise ConfigError(field, value, _RATE_EXPECTED)
    number = _number(match["num"], field, value, _RATE_EXPECTED)
    rest = match["rest"].strip()
    per = None
    for suffix in sorted(_PER, key=len, reverse=True):
        if suffix and rest.lower().endswith(suffix):
            candidate = rest[: len(rest) - len(suffix)]
            if suffix == "ps" and candidate[-1:] not in ("b", "B"):
                continue  # "ps" only as in "Mbps"/"MBps"
            per = _PER[suffix]
            rest = candidate.strip()
            break
    if per is None:
        per = 1.0
    factor = _size_factor(rest, field, value, _RATE_EXPECTED) if rest else 1.0
    rate = number * factor * per
    if not math.isfinite(rate):
        raise ConfigError(field, value, _RATE_EXPECTED)
    return rate


def parse_size(value: str | int | float, *, field: str = "size") -> int:
    """Parse a size into a whole number of bytes.

    >>> parse_size("1.5KiB")
    1536
    >>> parse_size("8Mbit")
    1000000
    >>> parse_size(4096)
    4096

    Raises:
        ConfigError: the text is not a size, is negative, or is not a whole byte count.
    """
    if isinstance(value, str):
        text = value.strip()
        match = re.fullmatch(_NUMBER + r"\s*(?P<rest>.*)", text)
        if match is None:
            raise ConfigError(field, value, _SIZE_EXPECTED)
        number = _number(match["num"], field, value, _SIZE_EXPECTED)
        rest = match["rest"].strip()
        factor = _size_factor(rest, field, value, _SIZE_EXPECTED) if rest else 1.0
        size = number * factor
    else:
        size = _check_real(value, field, _SIZE_EXPECTED)
    if not math.isfinite(size):
        raise ConfigError(field, value, _SIZE_EXPECTED)
    whole = round(size)
    if abs(size - whole) > 1e-6 * max(1.0, size):
        raise ConfigError(field, value, "a whole number of bytes")
    return int(whole)


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
    "weeks": 604800.0,
}

_DURATION_PART = re.compile(_NUMBER + r"\s*(?P<unit>[a-zµ]*)\s*", re.IGNORECASE)


def parse_duration(value: str | float, *, field: str = "duration") -> float:
    """Parse a duration into seconds.

    >>> parse_duration("90s")
    90.0
    >>> parse_duration("1d 2h")
    93600.0
    >>> parse_duration("250ms")
    0.25
    >>> parse_duration(5)
    5.0

    A bare number is seconds. Parts may be combined (``"1h30m"``, ``"2h 15m"``).

    Raises:
        ConfigError: the text is not a duration, or it is negative.
    """
    if not isinstance(value, str):
        return _check_real(value, field, _DURATION_EXPECTED)
    text = value.strip()
    if not text:
        raise ConfigError(field, value, _DURATION_EXPECTED)
    total = 0.0
    pos = 0
    parts = 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None or match.end() == pos:
            raise ConfigError(field, value, _DURATION_EXPECTED)
        unit = match["unit"].lower()
        if unit == "":
            if parts or match.end() != len(text):
                raise ConfigError(field, value, _DURATION_EXPECTED)
            factor = 1.0
        elif unit in _DURATION_UNITS:
            factor = _DURATION_UNITS[unit]
        else:
            raise ConfigError(field, value, _DURATION_EXPECTED)
        total += _number(match["num"], field, value, _DURATION_EXPECTED) * factor
        parts += 1
        pos = match.end()
    if not math.isfinite(total):
        raise ConfigError(field, value, _DURATION_EXPECTED)
    return total


def format_rate(rate: float) -> str:
    """Render bytes per second for people: ``format_rate(1.25e6) == '1.25 MB/s'``."""
    if math.isinf(rate):
        return "unlimited"
    return f"{format_size(rate)}/s"


def format_size(size: float) -> str:
    """Render a byte count with an SI prefix: ``format_size(2_500_000) == '2.5 MB'``."""
    value = float(size)
    for prefix in ("", "k", "M", "G", "T"):
        if abs(value) < 1000 or prefix == "T":
            text = (
                f"{value:.3g}"
                if prefix
                else f"{value:.0f}"
                if value == int(value)
                else f"{value:.3g}"
            )
            return f"{text} {prefix}B"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def format_duration(seconds: float) -> str:
    """Render seconds compactly: ``format_duration(5400) == '1h30m'``."""
    if math.isinf(seconds):
        return "forever"
    if seconds < 60:
        return f"{seconds:.3g}s"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    for amount, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")):
        if amount:
            out += f"{amount}{unit}"
    return out
