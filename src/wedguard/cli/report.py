"""``wedguard report``: stored session reports from the history database, and the
last session's picture (``--plot``, matplotlib) or HTML page (``--html``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from typing import Any

from wedguard import report as report_module
from wedguard.cli.args import Commands, config_option, path_type, text_type, whole_type
from wedguard.cli.common import EXIT_OK, command_config
from wedguard.errors import ConfigError
from wedguard.history import MetricsStore, StoreCorruptError
from wedguard.units import format_duration, format_size

__all__ = ["cmd_report", "draw", "history_store", "register"]


def history_store(args: argparse.Namespace) -> Any:
    """The history database of ``--history`` or of the configuration, opened read-only."""
    path = args.history
    config = None
    if path is None:
        config = command_config(args.config)
        if config.history is not None:
            path = config.history["path"]
    if path is None:
        raise ConfigError(
            "no history database: give --history PATH or set [history] path in the configuration"
        )
    if not os.path.exists(path):
        raise ConfigError("--history", path, "an existing history database")
    retention = "7d"
    if config is not None and config.history is not None:
        retention = config.history.get("retention", retention)
    try:
        # a reader: nothing is written, so a database on read-only media opens too
        return MetricsStore(path, retention=retention, read_only=True)
    except StoreCorruptError as exc:  # the path names some other file
        where = "--history" if args.history is not None else "history.path"
        raise ConfigError(where, path, f"a wedguard history database ({exc})") from None


def cmd_report(args: argparse.Namespace) -> int:
    """Print the stored session reports (``--name``, ``--last``, ``--json``)."""
    with contextlib.closing(history_store(args)) as store:
        records = store.sessions(name=args.name)
        records = records[-args.last :] if args.last else records
        if args.json:
            print(json.dumps([dict(r.data) for r in records], indent=2, default=str))
            return EXIT_OK
        if not records:
            print("no session reports stored")
            return EXIT_OK
        print(
            f"{'ended':<20} {'name':<16} {'bytes':>10} {'took':>8} {'waited':>8} "
            f"{'pauses':>6}  outcome"
        )
        for r in records:
            data = r.data
            waited = sum(float(v) for v in dict(data.get("wait_seconds", {})).values())
            print(
                f"{r.at:%Y-%m-%d %H:%M:%S} {r.name[:16]:<16} {format_size(r.bytes):>10} "
                f"{format_duration(r.duration):>8} {format_duration(waited):>8} "
                f"{data.get('pauses', 0)!s:>6}  {data.get('outcome', '?')}"
            )
        if args.plot or args.html:
            draw(records[-1], args.plot, args.html, store)
    return EXIT_OK


def draw(record: Any, png: str | None, html: str | None, store: Any) -> None:
    """The last session's picture (PNG, needs matplotlib) and/or HTML page, with
    production latency from the history when it holds some."""
    data = dict(record.data)
    latency = report_module.history_latency(store, data)
    if png:
        try:
            figure = report_module.plot_session(data, **latency)
        except report_module.PlotUnavailable:
            raise ConfigError("--plot", png, "matplotlib installed (or use --html)") from None
        figure.savefig(png)
        print(f"wrote {png}")
    if html:
        report_module.write_html_report(html, data, **latency)
        print(f"wrote {html}")


def register(commands: Commands) -> None:
    """``wedguard report``: its arguments."""
    p = commands.add("report", "stored session reports from the history database")
    p.add_argument(
        "--history",
        metavar="DB",
        type=path_type(),
        help="the history database (default: the config's)",
    )
    config_option(p)
    p.add_argument("--name", type=text_type, help="only sessions with this name")
    p.add_argument(
        "--last", type=whole_type(0), default=20, help="how many (default 20; 0 for all)"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--plot",
        metavar="PNG",
        type=path_type(),
        help="draw the last session's picture (matplotlib)",
    )
    p.add_argument(
        "--html", metavar="FILE", type=path_type(), help="write the last session's report as HTML"
    )
    p.set_defaults(func=cmd_report)
