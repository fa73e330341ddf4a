"""What the store writes for a sample, an event and a session report: the rows, read
from whatever form the caller hands over (an object with ``to_dict()``, or a mapping).

>>> list(sample_readings({"cpu.percent": 12, "api.latency_s": float("nan")}, 60.0))
[('cpu.percent', 60.0, 12.0)]
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from wedguard.errors import ConfigError
from wedguard.history.convert import (
    as_dict,
    aware_instant,
    first,
    json_default,
    number,
    timestamp,
)
from wedguard.interfaces import Event

__all__ = ["EventRow", "SessionRow", "event_row", "sample_readings", "session_row"]

EventRow = tuple[float, str, str]
"""``(unix time, kind, JSON data)``: a row of the ``events`` table."""

SessionRow = tuple[float, str, float, float, str]
"""``(unix time, name, bytes, duration, JSON data)``: a row of the ``sessions`` table."""


def sample_readings(sample: Mapping[str, float], ts: float) -> Iterator[tuple[str, float, float]]:
    """``(metric, ts, value)`` for each finite reading of ``sample`` (checked)."""
    if not isinstance(sample, Mapping):
        raise ConfigError("sample", sample, "a mapping of metric name to number")
    for name, value in sample.items():
        if not isinstance(name, str) or not name:
            raise ConfigError("sample", name, "metric names that are non-empty strings")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"sample[{name!r}]", value, "a number")
        if math.isfinite(value):  # a failed reading (nan) is not history
            yield name, ts, float(value)


def event_row(
    event: Event | Mapping[str, Any], at: datetime | None, now: Callable[[], datetime]
) -> EventRow:
    """The row of ``event``, at ``at``, else the event's own time, else ``now()``."""
    data = as_dict(event, "event")
    kind = getattr(event, "kind", None) if not isinstance(event, Mapping) else None
    kind = kind if isinstance(kind, str) else data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ConfigError("event", event, "an event with a non-empty 'kind'")
    when = at if at is not None else aware_instant(first(data, "at", "time", "started_at"))
    ts = timestamp("at", when if when is not None else now())
    assert ts is not None
    return ts, kind, json.dumps(data, default=json_default, sort_keys=True)


def session_row(report: object, at: datetime | None, now: Callable[[], datetime]) -> SessionRow:
    """The row of a session ``report``, at ``at``, else the report's end, else ``now()``."""
    data = as_dict(report, "report")
    name = first(data, "name", "session")
    if not isinstance(name, str) or not name:
        raise ConfigError("report", report, "a session report with a 'name'")
    size = number(first(data, "bytes", "total_bytes", "bytes_done"))
    if size is None:
        raise ConfigError("report.bytes", data.get("bytes"), "a number of bytes")
    duration = number(
        first(data, "wall_time", "duration_s", "duration", "elapsed", "wall_s", "wall")
    )
    if duration is None:
        raise ConfigError("report.wall_time", data.get("wall_time"), "a number of seconds")
    if at is None:
        at = aware_instant(first(data, "ended_at", "finished_at", "end", "started_at", "start"))
        if at is None:
            at = now()
    ts = timestamp("at", at)
    assert ts is not None
    return ts, name, size, duration, json.dumps(data, default=json_default, sort_keys=True)
