"""Reading a ``wedguard.toml``: :func:`load_config` (the validated configuration)
and :func:`load` (the guard it describes)."""

from __future__ import annotations

import os
import sys
from typing import Any

from wedguard import _checks
from wedguard.clock import Clock
from wedguard.config.model import Config
from wedguard.errors import ConfigError
from wedguard.runtime.guard import Guard

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]


#: the largest configuration file read: far more than any configuration needs, and a
#: bound for what is not one (``/dev/zero``, a log file given by mistake)
MAX_CONFIG_BYTES = 1 << 20


def _read(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    name = _checks.path(path, "config", "a configuration file path")
    try:
        with open(name, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                name, f"over {MAX_CONFIG_BYTES} bytes", "a configuration file of at most 1 MiB"
            )
        return name, tomllib.loads(raw.decode("utf-8"))
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
    return load_config(path).assemble(clock=clock, **overrides).guard
