"""The effective configuration: :class:`Config`."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from wedguard.clock import Clock
from wedguard.config.adapters import dry_run, parse_sinks, parse_sources
from wedguard.config.assembly import Built, assemble
from wedguard.config.checks import Context, check_table, environment, take
from wedguard.config.render import config_dict, to_toml
from wedguard.config.sections import (
    ALERTS_SCHEMA,
    GUARD_SCHEMA,
    RUN_SCHEMA,
    SECTIONS,
    GuardSettings,
    RunSettings,
    SinkSpec,
    SourceSpec,
    parse_breaker,
    parse_calendar,
    parse_controller,
    parse_history,
    parse_redis,
    parse_thresholds,
)
from wedguard.distributed import RedisCoordinator
from wedguard.errors import ConfigError
from wedguard.interfaces import Sink
from wedguard.policy.calendar import PeakHourCalendar
from wedguard.policy.impact import Thresholds
from wedguard.runtime.guard import Guard


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
    run: RunSettings = attrs.field(factory=RunSettings)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, path: str = "wedguard.toml", env: bool = True
    ) -> Config:
        """Validate a parsed TOML document (``path`` names it in errors).

        With ``env=False`` the environment variables that hold secrets are not
        required to be set (for checking a file on another machine).
        """
        ctx = Context(path or "wedguard.toml")
        for key, value in data.items():
            if key not in SECTIONS:
                raise ctx.error(key, value, "a known section (" + ", ".join(SECTIONS) + ")")
        guard = GuardSettings(
            **take(ctx, check_table(ctx, data.get("guard", {}), "guard"), "guard", GUARD_SCHEMA)
        )
        if "calendar" in data:
            calendar = parse_calendar(ctx, check_table(ctx, data["calendar"], "calendar"))
        else:
            calendar = PeakHourCalendar.default(tz="UTC")
        thresholds = parse_thresholds(
            ctx, check_table(ctx, data.get("thresholds", {}), "thresholds")
        )
        controller = parse_controller(
            ctx, check_table(ctx, data.get("controller", {}), "controller")
        )
        sources = (
            parse_sources(ctx, data["sources"], env=env)
            if "sources" in data
            else (SourceSpec("system", {}, 0),)
        )
        sinks = (
            parse_sinks(ctx, data["sinks"], env=env)
            if "sinks" in data
            else (SinkSpec("logging", {}, None, 0),)
        )
        alerts = take(
            ctx, check_table(ctx, data.get("alerts", {}), "alerts"), "alerts", ALERTS_SCHEMA
        )
        history = None
        if "history" in data:
            history = parse_history(ctx, check_table(ctx, data["history"], "history"))
        breaker = parse_breaker(ctx, check_table(ctx, data.get("breaker", {}), "breaker"))
        dry_run(ctx, sources, sinks, env=env)
        redis = None
        if "redis" in data:
            redis = parse_redis(ctx, check_table(ctx, data["redis"], "redis"), env=env)
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
                **take(ctx, check_table(ctx, data.get("run", {}), "run"), "run", RUN_SCHEMA)
            ),
        )

    # -- building the guard ---------------------------------------------------------------

    def build(self, *, clock: Clock | None = None, **overrides: Any) -> Guard:
        """Deprecated alias: use :func:`wedguard.config.load` (a guard from a file) or
        :meth:`assemble` (the guard with what must be closed after it).

        .. deprecated:: 0.2.0
        """
        warnings.warn(
            "Config.build() is deprecated; use wedguard.config.load(path) for a guard "
            "from a file, or Config.assemble() for the guard with its dispatcher and history",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.assemble(clock=clock, **overrides).guard

    def assemble(
        self,
        *,
        clock: Clock | None = None,
        extra_sinks: Sequence[Sink] = (),
        **overrides: Any,
    ) -> Built:
        """The guard with its dispatcher, history and closers, as a :class:`Built`.

        :func:`wedguard.config.load` is this for a file, returning the guard; use
        ``assemble`` when the alert dispatcher and the history must be flushed and
        closed with the guard (``with config.assemble() as built: ...``).

        Args:
            clock: the clock for the guard and its policies (default: the system's).
            extra_sinks: more sinks that hear every event (the command line's).
            **overrides: Guard arguments that win over the file (``rate=``,
                ``stop_file=``, ``sources=``, ``sinks=``...). The history sink of
                ``[history]`` is kept even when ``sinks=`` is given.
        """
        return assemble(self, clock=clock, extra_sinks=extra_sinks, **overrides)

    def coordinator(self, *, clock: Clock | None = None, sinks: Sequence[Sink] = ()) -> Any:
        """The :class:`wedguard.distributed.RedisCoordinator` of ``[redis]``.

        Raises:
            ConfigError: the file has no ``[redis]`` section, or its URL's variable is
                not set.
        """
        ctx = Context(self.path)
        if self.redis is None:
            raise ConfigError(f"{self.path}: redis", None, "a [redis] section")
        opts = dict(self.redis)
        url = opts.pop("url", None) or environment(ctx, "redis.url_env", opts["url_env"])
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
        return config_dict(self)

    def render(self) -> str:
        """The effective configuration as TOML text, secrets redacted.

        Environment variables that hold secrets are shown by name with whether they
        are set, never with their value.
        """
        return to_toml(self.to_dict())

    def check_host(self) -> None:
        """Check what only this host can tell (``wedguard config check`` does, unless
        ``--no-env``): a file the configuration would fail on when it runs.

        * ``guard.stop_file`` and ``guard.control_socket``: their directory exists
          (``wedguard stop`` never creates it; a guard refuses a socket it cannot bind);
        * ``history.path``: its directory exists (else no row is ever stored);
        * a ``process`` source's ``pid``: the process exists (else its probes fail and
          the backup is throttled, then halted).

        Raises:
            ConfigError: the first such problem, naming the file and the key.
        """
        ctx = Context(self.path)
        paths = {
            "guard.stop_file": self.guard.stop_file,
            "guard.control_socket": self.guard.control_socket,
            "history.path": None if self.history is None else self.history.get("path"),
        }
        for key, path in paths.items():
            if path is None:
                continue
            folder = os.path.dirname(os.path.abspath(os.fspath(path)))
            if not os.path.isdir(folder):
                raise ctx.error(key, str(path), f"a path in an existing directory (no {folder})")
        for spec in self.sources:
            pid = spec.options.get("pid") if spec.type == "process" else None
            if pid is not None and not _process_exists(int(pid)):
                raise ctx.error(f"sources[{spec.index}].pid", pid, "a running process (none)")

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


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's (or beyond the kernel's range)
        return True
    return True
