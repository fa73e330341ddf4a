"""Building the guard a configuration describes, with what must be closed after it."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wedguard.clock import Clock
from wedguard.config.adapters import build_sink, build_source
from wedguard.config.checks import Context
from wedguard.config.sections import CONTROLLERS
from wedguard.errors import ConfigError
from wedguard.history import HistorySink
from wedguard.interfaces import Sink, Source
from wedguard.policy.breaker import CircuitBreaker
from wedguard.policy.impact import ImpactAnalyzer
from wedguard.runtime.alerts import AlertDispatcher, Severity
from wedguard.runtime.guard import Guard

if TYPE_CHECKING:
    from wedguard.config.model import Config

__all__ = ["Built", "assemble"]


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

        >>> from wedguard.config import Config
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


def assemble(
    config: Config,
    *,
    clock: Clock | None = None,
    extra_sinks: Sequence[Sink] = (),
    **overrides: Any,
) -> Built:
    """The guard ``config`` describes, with its dispatcher, history and closers.

    What :meth:`Config.assemble` runs; ``overrides`` are Guard arguments that win over
    the file (the history sink of ``[history]`` is kept even when ``sinks=`` is given).
    """
    ctx = Context(config.path)
    closers: list[Any] = []
    try:
        direct, dispatcher = _sinks(ctx, config, clock, closers)
        history = None
        sources = [build_source(ctx, spec) for spec in config.sources]
        if config.history is not None:
            history = HistorySink(
                config.history["path"],
                alerts=dispatcher,
                **{k: v for k, v in config.history.items() if k != "path"},
            )
            direct.append(history)
            sources = [history.source(s) for s in sources]
        coordinator = None
        if config.redis is not None:
            coordinator = config.coordinator(clock=clock, sinks=())
            closers.append(coordinator)
        kwargs = _guard_kwargs(config, clock, sources, [*direct, *extra_sinks], coordinator)
        if "sinks" in overrides and history is not None:
            overrides = {**overrides, "sinks": [*overrides["sinks"], history]}
        kwargs.update(overrides)
        if "sources" in overrides and "analyzer" not in overrides:
            kwargs["analyzer"] = (
                ImpactAnalyzer(config.thresholds, clock=clock) if overrides["sources"] else None
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


def _sinks(
    ctx: Context, config: Config, clock: Clock | None, closers: list[Any]
) -> tuple[list[Sink], AlertDispatcher | None]:
    """The sinks that hear every event (the alert dispatcher among them when a sink
    takes alerts), and the dispatcher; what must be closed is added to ``closers``."""
    direct: list[Sink] = []
    routes: dict[Severity, list[Sink]] = {}
    for spec in config.sinks:
        sink, closer = build_sink(ctx, spec, clock)
        if closer is not None:
            closers.append(closer)
        if spec.alerts is None:
            direct.append(sink)
        else:
            routes.setdefault(spec.alerts, []).append(sink)
    dispatcher = None
    if routes:
        dispatcher = AlertDispatcher(routes=routes, clock=clock, **config.alerts)
        direct.append(dispatcher)
    return direct, dispatcher


def _guard_kwargs(
    config: Config,
    clock: Clock | None,
    sources: list[Source],
    sinks: list[Sink],
    coordinator: Any,
) -> dict[str, Any]:
    """The Guard's arguments as the file gives them (before any override)."""
    kind = config.controller["kind"]
    params = {k: v for k, v in config.controller.items() if k != "kind"}
    g = config.guard
    kwargs: dict[str, Any] = {
        "rate": g.rate,
        "calendar": config.calendar,
        "breaker": (
            CircuitBreaker("guard", clock=clock, **config.breaker) if coordinator is None else None
        ),
        "analyzer": ImpactAnalyzer(config.thresholds, clock=clock) if sources else None,
        # the file's analyser is the guard's own: it learns a latency's baseline before
        # the first byte, as Guard's own analyser does (else the limit is not judged)
        "baseline_warmup": "5s" if sources else None,
        "sources": sources,
        "sinks": sinks,
        "max_concurrent": g.max_concurrent,
        "stop_file": g.stop_file,
        "clock": clock,
        "controller": CONTROLLERS[kind](**params),
        "ops_rate": g.ops_rate,
        "sample_interval": g.sample_interval,
        "stop_check_interval": g.stop_check_interval,
        "slot_timeout": g.slot_timeout,
        "max_hold": g.max_hold,
        "control_socket": g.control_socket,
        "nice": g.nice,
        "ionice": g.ionice,
        "cpus": g.cpus,
    }
    if coordinator is not None:
        # the breaker keeps its state in Redis, shared by the fleet
        name = config.redis.get("name", "guard") if config.redis else "guard"
        kwargs["breaker"] = CircuitBreaker(
            "guard",
            clock=getattr(coordinator, "clock", clock),
            storage=coordinator.breaker_storage(name),
            **config.breaker,
        )
        kwargs["coordinator"] = coordinator
        kwargs["name"] = name
    return kwargs
