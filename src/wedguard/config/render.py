"""Showing a configuration: as plain TOML-friendly values (secrets redacted) and as
TOML text (``wedguard config check``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wedguard.config.sections import THRESHOLD_FIELDS, GuardSettings
from wedguard.levels import Level
from wedguard.policy.calendar import PeakHourCalendar
from wedguard.policy.impact import Thresholds
from wedguard.redact import redact_url
from wedguard.runtime.defaults import CPUS
from wedguard.units import (
    format_duration,
    format_rate,
    format_size,
)

if TYPE_CHECKING:
    from wedguard.config.model import Config

__all__ = ["calendar_dict", "config_dict", "redacted", "to_toml"]


def config_dict(config: Config) -> dict[str, Any]:
    """``config`` as plain TOML-friendly values, secrets redacted (:meth:`Config.to_dict`)."""
    out: dict[str, Any] = {
        "guard": _guard_dict(config.guard),
        "calendar": calendar_dict(config.calendar),
        "thresholds": _thresholds_dict(config.thresholds),
        "controller": dict(config.controller),
        "breaker": {
            "failure_threshold": config.breaker["failure_threshold"],
            "recovery_timeout": format_duration(config.breaker["recovery_timeout"]),
            **{
                k: v
                for k, v in config.breaker.items()
                if k not in ("failure_threshold", "recovery_timeout")
            },
        },
        "alerts": {
            k: (
                "off"
                if v is None
                else format_duration(v)
                if isinstance(v, float)
                else list(v)
                if isinstance(v, tuple)
                else v
            )
            for k, v in config.alerts.items()
        },
        "sources": [{"type": s.type, **redacted(s.options)} for s in config.sources],
        "sinks": [
            {
                "type": s.type,
                **redacted(s.options),
                "alerts": "none" if s.alerts is None else s.alerts.name.lower(),
            }
            for s in config.sinks
        ],
    }
    if config.redis is not None:
        out["redis"] = redacted(config.redis)
    out["run"] = {"on_guard_death": config.run.on_guard_death}
    if config.history is not None:
        out["history"] = {
            k: format_duration(v) if isinstance(v, float) else v for k, v in config.history.items()
        }
    return out


def _guard_dict(g: GuardSettings) -> dict[str, Any]:
    guard: dict[str, Any] = {
        "rate": format_rate(g.rate) if g.rate < math.inf else "off",
        "max_concurrent": "off" if g.max_concurrent is None else g.max_concurrent,
    }
    if g.stop_file is not None:
        guard["stop_file"] = g.stop_file
    guard["ops_rate"] = "off" if g.ops_rate is None else f"{g.ops_rate:g}/s"
    guard["sample_interval"] = format_duration(g.sample_interval)
    guard["stop_check_interval"] = format_duration(g.stop_check_interval)
    guard["slot_timeout"] = "forever" if g.slot_timeout is None else format_duration(g.slot_timeout)
    guard["max_hold"] = "forever" if g.max_hold is None else format_duration(g.max_hold)
    if g.control_socket is not None:
        guard["control_socket"] = g.control_socket
    if g.nice:
        guard["nice"] = g.nice
    if g.ionice:
        guard["ionice"] = True
    if g.cpus != CPUS:
        cpus = "all" if g.cpus is None else g.cpus
        guard["cpus"] = cpus if isinstance(cpus, (int, str)) else list(cpus)
    return guard


def _thresholds_dict(th: Thresholds) -> dict[str, Any]:
    thresholds: dict[str, Any] = {}
    for name in THRESHOLD_FIELDS:
        value = getattr(th, name)
        if value is None:
            thresholds[name] = "off"
        elif name in ("api_latency", "db_latency"):
            thresholds[name] = f"{value * 100:g}%"
        elif name == "backup_cpu":
            thresholds[name] = f"{value:g}%"
        elif name == "backup_memory":
            thresholds[name] = format_size(value).replace(" ", "")
        else:
            thresholds[name] = format_rate(value)
    if th.relative:
        thresholds["relative"] = dict(th.relative)
    if th.absolute:
        thresholds["absolute"] = dict(th.absolute)
    thresholds["critical"] = th.critical
    if th.per_level:
        thresholds["per_level"] = {
            Level(level).name.lower(): {k: "off" if v is None else v for k, v in over.items()}
            for level, over in th.per_level.items()
        }
    return thresholds


def calendar_dict(calendar: PeakHourCalendar | None) -> dict[str, Any]:
    """The ``[calendar]`` table of ``calendar`` (its rules as text)."""
    if calendar is None:
        return {"preset": "none"}
    data = calendar.to_dict()
    return {
        "tz": data["tz"],
        "default": data["default"],
        "rules": "\n".join(r.text(with_name=True) for r in calendar.rules),
    }


def redacted(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with URLs redacted and secret-named values hidden."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, str) and "://" in value:
            value = redact_url(value)
        if not key.endswith("_env") and any(s in key for s in ("password", "secret", "token")):
            value = "***"
        out[key] = value
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if "\n" in value:
            body = value.replace("\\", "\\\\").replace('"""', '\\"""')
            return f'"""\n{body}\n"""'
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
        )
    return _toml_value(str(value))


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def to_toml(data: Mapping[str, Any]) -> str:
    """``data`` as TOML text. Tables first, then arrays of tables; empty arrays as top-level keys before both
    (a key written after a table header would belong to that table)."""
    lines: list[str] = [f"{section} = []" for section, body in data.items() if body == []]
    if lines:
        lines.append("")
    for section, body in data.items():
        if isinstance(body, Mapping):
            lines.append(f"[{section}]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items())
            lines.append("")
    for section, body in data.items():
        if isinstance(body, list):
            for entry in body:
                lines.append(f"[[{section}]]")
                lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items())
                lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
