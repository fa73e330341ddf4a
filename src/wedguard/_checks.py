"""Small argument checks shared by the constructors: each returns the normalised value
or raises :class:`~wedguard.errors.ConfigError` naming the field and the value.

>>> path("/run/wedguard.stop", "stop_file")
'/run/wedguard.stop'
>>> path("a\\x00b", "stop_file")
Traceback (most recent call last):
...
wedguard.errors.ConfigError: stop_file: 'a\\x00b' is not valid; expected a file path without NUL characters
>>> port(70000, "port")
Traceback (most recent call last):
...
wedguard.errors.ConfigError: port: 70000 is not valid; expected a TCP port 0-65535
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from wedguard.errors import ConfigError

__all__ = [
    "ALL",
    "ALL_BUT_ONE",
    "AUTO",
    "CPUS",
    "GUARD_CPUS",
    "MAX_TIMEOUT",
    "NAME_MAX",
    "PATH_MAX",
    "SOCKET_PATH_MAX",
    "bounded",
    "cpus",
    "items",
    "mapping",
    "path",
    "port",
    "real",
    "socket_path",
    "timeout",
    "units",
]

#: the longest Unix socket path, in bytes, that ``bind()`` takes on Linux (sun_path
#: holds 108 bytes with the closing NUL); other systems allow less (macOS: 103).
SOCKET_PATH_MAX = 107

#: the longest file name (one path component) and path, in bytes, most file systems
#: take (NAME_MAX and PATH_MAX on Linux)
NAME_MAX = 255
PATH_MAX = 4095

#: the longest timeout or retry delay a network sink or probe takes: a day (sockets
#: and thread waits refuse values beyond what the platform's time_t holds)
MAX_TIMEOUT = 86400.0


def real(value: object, field: str, expected: str) -> float:
    """A number as a float (``bool`` and ints too large for a float are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, value, expected)
    try:
        return float(value)
    except OverflowError:
        raise ConfigError(field, value, expected) from None


def path(value: object, field: str, expected: str = "a file path") -> str:
    """A file path: a non-empty ``str`` or ``os.PathLike`` without NUL characters that
    the file system can encode, no name in it over 255 bytes, at most 4095 in all."""
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(field, value, expected)
    try:
        text = os.fspath(value)
    except TypeError:
        raise ConfigError(field, value, expected) from None
    if not isinstance(text, str) or not text:
        raise ConfigError(field, value, f"{expected} (not empty)")
    if "\x00" in text:
        raise ConfigError(field, value, f"{expected} without NUL characters")
    try:
        raw = os.fsencode(text)
    except UnicodeError:
        raise ConfigError(field, value, f"{expected} the file system can encode") from None
    if len(raw) > PATH_MAX or any(len(name) > NAME_MAX for name in raw.split(b"/")):
        raise ConfigError(
            field, value, f"{expected} of at most {PATH_MAX} bytes, {NAME_MAX} per name"
        )
    return text


NOT_A_DIRECTORY = "a Unix socket path naming a file, not a directory"


def names_a_directory(text: str) -> bool:
    """True when ``text`` can only name a directory (``/``, ``run/``, ``..``): never a
    socket's path.

    >>> names_a_directory("/"), names_a_directory("/run/wg.sock")
    (True, False)
    """
    return text.endswith("/") or os.path.basename(text) in ("", ".", "..")


def socket_path(value: object, field: str) -> str:
    """A Unix socket path that ``bind()`` will take (at most 107 bytes)."""
    text = path(value, field, "a Unix socket path")
    if names_a_directory(text):
        raise ConfigError(field, value, NOT_A_DIRECTORY)
    size = len(os.fsencode(text))
    if size > SOCKET_PATH_MAX:
        raise ConfigError(
            field, value, f"a Unix socket path of at most {SOCKET_PATH_MAX} bytes (it has {size})"
        )
    return text


def port(value: object, field: str, *, low: int = 0) -> int:
    """A TCP port number, ``low``-65535 (0: any free port)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        raise ConfigError(field, value, f"a TCP port {low}-65535")
    return value


def items(value: object, field: str, expected: str) -> tuple[Any, ...]:
    """The items of an iterable (not a string or bytes) as a tuple."""
    if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
        raise ConfigError(field, value, expected)
    try:
        return tuple(value)
    except TypeError:
        raise ConfigError(field, value, expected) from None


def mapping(value: object, field: str, expected: str) -> Mapping[Any, Any]:
    """A mapping, as given."""
    if not isinstance(value, Mapping):
        raise ConfigError(field, value, expected)
    return value


def bounded(value: float, field: str, given: object, low: float, high: float, unit: str) -> float:
    """``value`` if ``low <= value <= high``; the error states the bounds."""
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(field, given, f"{unit} from {low:g} to {high:g}")
    return value


def units(n: object) -> float:
    """A count of units to take (``n``): a finite number >= 0, as a float.

    >>> units(3)
    3.0
    >>> units(float("nan"))
    Traceback (most recent call last):
    ...
    wedguard.errors.ConfigError: n: nan is not valid; expected a finite number of units >= 0
    """
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise ConfigError("n", n, "a finite number of units >= 0")
    try:
        value = float(n)
    except OverflowError:
        raise ConfigError("n", n, "a finite number of units >= 0") from None
    if not 0 <= value < math.inf:
        raise ConfigError("n", n, "a finite number of units >= 0")
    return value


def timeout(value: object) -> None:
    """A wait's ``timeout``: seconds >= 0, or None (wait as long as it takes)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError("timeout", value, "seconds >= 0, or None")


CPUS = "a number of cores >= 1, CPU numbers, 'all-but-one', or 'all' (None)"
ALL_BUT_ONE = "all-but-one"
"""``cpus``: every core this process may use but the first (a core left to
production), where it may use two or more; else not confined."""
ALL = "all"
"""``cpus``: not confined (as None)."""
AUTO = "auto"
"""A guard's ``cpus``: a session's thread not confined, a command it runs on
:data:`ALL_BUT_ONE`."""
GUARD_CPUS = "'auto', a number of cores >= 1, CPU numbers, 'all-but-one', or 'all' (None)"


def cpus(
    value: object, field: str, allowed: frozenset[int] | None = None, expected: str = CPUS
) -> frozenset[int] | None:
    """``value`` as the cores to confine a backup to: None or ``"all"`` (not
    confined), a count ``n`` >= 1 (the last ``n`` of ``allowed``; all of them when there
    are no more), ``"all-but-one"`` (all of ``allowed`` but the first; None when that is
    one core, or not on Linux) or CPU numbers in ``allowed``. ``allowed`` defaults to
    the calling thread's cores (Linux only); ``expected`` is what the error says a
    valid value is.

    >>> cpus(1, "cpus", frozenset({0, 1, 2}))
    frozenset({2})
    >>> cpus("all-but-one", "cpus", frozenset({0, 1, 2}))
    frozenset({1, 2})
    >>> cpus("all-but-one", "cpus", frozenset({3})) is None
    True
    >>> cpus([3], "cpus", frozenset({0, 1}))
    Traceback (most recent call last):
    ...
    wedguard.errors.ConfigError: cpus: [3] is not valid; expected CPU numbers this process may use: [0, 1]
    """
    if value is None or value == ALL:
        return None
    if allowed is None and hasattr(os, "sched_getaffinity"):
        allowed = frozenset(os.sched_getaffinity(0))
    if value == ALL_BUT_ONE:  # nothing to leave on one core, or off Linux
        return frozenset(sorted(allowed)[1:]) if allowed and len(allowed) > 1 else None
    if isinstance(value, (bool, str, bytes, float)) or (isinstance(value, int) and value < 1):
        raise ConfigError(field, value, expected)
    if not isinstance(value, int):
        try:
            cores: frozenset[int] = frozenset(value)  # type: ignore[call-overload]
        except TypeError:
            raise ConfigError(field, value, expected) from None
        if not cores or not all(isinstance(c, int) and not isinstance(c, bool) for c in cores):
            raise ConfigError(field, value, expected)
    if allowed is None:
        raise ConfigError(field, value, "None: confining to cores needs Linux")
    if isinstance(value, int):
        return frozenset(sorted(allowed)[-value:])
    if not cores <= allowed:
        raise ConfigError(field, value, f"CPU numbers this process may use: {sorted(allowed)}")
    return cores
