"""Sources: adapters that measure production and the backup.

Each is a :class:`wedguard.Source`: ``sample()`` returns a mapping of metric name to
float, never raises, never blocks past its timeout and is cheap. A reading that failed
is reported as ``"<metric>.error": 1.0`` (and no value), never as zero or an exception.

* :class:`SystemSource`: the machine's CPU, memory, disk and network (psutil).
* :class:`ProcessSource`: the backup's own CPU and RSS, children included.
* :class:`HttpProbe`: latency of requests to a production endpoint.
* :class:`CallableProbe`: how long a host callable takes (``SELECT 1``).
* :class:`ServiceLatencySource`: production's own latency percentiles, from its
  Prometheus histogram.
* :class:`PressureSource`: Linux pressure-stall information, system-wide and per cgroup.
* :class:`PostgresSource`: a PostgreSQL server's latency, connections, lock waits and
  activity (extra ``postgres``: psycopg, imported when a source is built).

This package imports only the standard library and psutil.
"""

from __future__ import annotations

from wedguard.sources.callable_probe import CallableProbe
from wedguard.sources.http_probe import HttpProbe
from wedguard.sources.postgres import PostgresSource
from wedguard.sources.pressure import PressureSource
from wedguard.sources.process import ProcessSource
from wedguard.sources.service import ServiceLatencySource
from wedguard.sources.system import SystemSource

__all__ = [
    "CallableProbe",
    "HttpProbe",
    "PostgresSource",
    "PressureSource",
    "ProcessSource",
    "ServiceLatencySource",
    "SystemSource",
]
