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


The package, by concern: :mod:`~wedguard.config.checks` (the validators),
:mod:`~wedguard.config.sections` (the sections and their schemas),
:mod:`~wedguard.config.adapters` (``[[sources]]`` and ``[[sinks]]``),
:mod:`~wedguard.config.model` (:class:`Config`), :mod:`~wedguard.config.render`
(showing it), :mod:`~wedguard.config.assembly` (building the guard) and
:mod:`~wedguard.config.loader` (reading a file).

One way to build a guard from a file: :func:`load`. :meth:`Config.assemble` is the
same guard with what must be closed after it (the alert dispatcher and the history);
``Config.build()`` is a deprecated alias.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from wedguard.config.assembly import Built
from wedguard.config.checks import MAX_DURATION
from wedguard.config.loader import load, load_config
from wedguard.config.model import Config
from wedguard.config.sections import GuardSettings, RunSettings, SinkSpec, SourceSpec

__all__ = [
    "MAX_DURATION",
    "Built",
    "Config",
    "GuardSettings",
    "RunSettings",
    "SinkSpec",
    "SourceSpec",
    "load",
    "load_config",
]
