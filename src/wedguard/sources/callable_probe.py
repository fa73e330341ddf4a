"""CallableProbe: time a host callable, such as a database round trip."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from wedguard.errors import ConfigError
from wedguard.sources._util import TimedCall, check_timeout

__all__ = ["CallableProbe"]


class CallableProbe:
    """Times a host callable: ``"db.latency_s"`` is how long ``fn()`` took.

    ``fn`` runs in a worker thread, so a call that hangs cannot hold ``sample()`` past
    ``timeout``: it is reported as a failed probe (``"db.latency_s.error": 1.0``), as is
    a call that raises. While a hung call is still running, later samples fail at once
    instead of starting more threads.

    Args:
        fn: the callable, e.g. ``lambda: conn.execute("SELECT 1")``.
        name: the metric name (default ``"db.latency_s"``).
        timeout: seconds to wait for ``fn`` (default 2).

    Example::

        >>> probe = CallableProbe(lambda: sum(range(1000)), name="db.latency_s", timeout=1)
        >>> sorted(probe.sample())
        ['db.latency_s']

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_call", "name", "timeout")

    def __init__(
        self, fn: Callable[[], Any], name: str = "db.latency_s", *, timeout: float = 2.0
    ) -> None:
        if not callable(fn):
            raise ConfigError("fn", fn, "a callable taking no arguments")
        if not isinstance(name, str) or not name:
            raise ConfigError("name", name, "a metric name such as 'db.latency_s'")
        self.name = name
        self.timeout = check_timeout(timeout)
        self._call = TimedCall(fn, self.timeout, f"wedguard-probe-{name}")

    def sample(self) -> Mapping[str, float]:
        """``{name: seconds}``, or ``{name + ".error": 1.0}`` when it failed or hung."""
        try:
            ok, _result, seconds = self._call.run()
        except Exception:  # pragma: no cover - defensive: sample() never raises
            ok, seconds = False, 0.0
        if ok:
            return {self.name: seconds}
        return {self.name + ".error": 1.0}

    def __repr__(self) -> str:
        return f"CallableProbe(name={self.name!r}, timeout={self.timeout:g})"
