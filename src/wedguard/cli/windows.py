"""``wedguard windows``: recommended backup windows from the history database, and
(``--rules LEVEL``) calendar rules that keep the rest of the week at LEVEL."""

from __future__ import annotations

import argparse
import contextlib
import json

from wedguard.cli.args import Commands, config_option, path_type, whole_type
from wedguard.cli.common import EXIT_OK, command_config
from wedguard.cli.report import history_store
from wedguard.errors import ConfigError
from wedguard.history import recommend_windows, windows_to_rules
from wedguard.policy.calendar import PeakHourCalendar

__all__ = ["cmd_windows", "outside_level", "register"]


def outside_level(text: str) -> str:
    """``--rules LEVEL``: a level and an optional cap, as a calendar rule ends."""
    what = "a level and an optional cap, such as 'blackout' or 'peak 10Mbit/s'"
    try:
        (rule,) = PeakHourCalendar.parse(f"Mon 00:00-01:00 {text}").rules
    except (ConfigError, ValueError):
        raise ConfigError("--rules", text, what) from None
    if rule.weekdays != {0} or (rule.start, rule.end) != (0, 60) or rule.season or rule.dates:
        raise ConfigError("--rules", text, what)
    return text


def cmd_windows(args: argparse.Namespace) -> int:
    """Print the ranked windows (``--count``, ``--duration``, ``--metric``, ``--json``)."""
    if args.rules is not None:
        outside_level(args.rules)
    config = command_config(args.config) if args.config else None
    calendar = None if config is None else config.calendar
    tz = args.tz or ("UTC" if calendar is None else str(calendar.to_dict()["tz"]))
    with contextlib.closing(history_store(args)) as store:
        try:
            windows = recommend_windows(
                store, duration=args.duration, count=args.count, calendar=calendar,
                metric=args.metric, tz=tz,
            )  # fmt: skip
        except ConfigError as exc:
            raise ConfigError(f"--{exc.field}", exc.value, exc.expected) from None
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "rank": w.rank,
                        "start": str(w.start),
                        "end": str(w.end),
                        "duration_s": w.duration,
                        "expected_load": w.expected_load,
                        "peak_load": w.peak_load,
                        "metric": w.metric,
                        "tz": w.tz,
                        "reason": w.reason,
                    }
                    for w in windows
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if not windows:
        print(f"no window found: not enough history of {args.metric} yet")
        return EXIT_OK
    for w in windows:
        print(
            f"{w.rank}. {w.start}-{w.end.time:%H:%M} {w.tz}: {w.metric} about "
            f"{w.expected_load:.3g} (p95 {w.peak_load:.3g}); {w.reason}"
        )
    if args.rules:
        print()
        print("# calendar rules for these windows ([calendar] rules):")
        print(windows_to_rules(windows, outside=args.rules))
    return EXIT_OK


# -- config check ------------------------------------------------------------------------


def register(commands: Commands) -> None:
    """``wedguard windows``: its arguments."""
    p = commands.add("windows", "recommended backup windows from the history database")
    p.add_argument(
        "--history",
        metavar="DB",
        type=path_type(),
        help="the history database (default: the config's)",
    )
    config_option(p)
    p.add_argument("--duration", default="2h", help="how long the backup needs (default 2h)")
    p.add_argument(
        "--count", type=whole_type(1, 1000), default=3, help="how many windows (default 3)"
    )
    p.add_argument(
        "--metric", default="cpu.percent", help="the load to avoid (default cpu.percent)"
    )
    p.add_argument("--tz", help="the time zone of the windows (default: the calendar's)")
    p.add_argument(
        "--rules",
        metavar="LEVEL",
        help="also print calendar rules: the windows open, the rest of the week LEVEL "
        "(e.g. 'blackout' or 'peak 10Mbit/s')",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_windows)
