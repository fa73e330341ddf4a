"""``wedguard config check FILE``: validate a file, print the effective configuration."""

from __future__ import annotations

import argparse
import json
import sys

from wedguard.cli.args import Commands, path_type
from wedguard.cli.common import EXIT_OK, print_notes
from wedguard.config import load_config

__all__ = ["cmd_config", "register"]


def cmd_config(args: argparse.Namespace) -> int:
    """Check ``args.file``: the rendering (or ``--json``) on stdout, ``FILE: OK`` on stderr."""
    config = load_config(args.file, env=not args.no_env)
    if not args.no_env:  # away from its host, neither its variables nor its directories
        config.check_host()
    notes = () if config.calendar is None else config.calendar.notes()
    if args.json:
        print(json.dumps(config.to_dict(), indent=2, default=str))
        print_notes(notes)
    else:
        print(config.render(), end="")
        for name, present in config.secrets().items():
            print(f"# secret from ${name}: {'set' if present else 'NOT SET'} (value hidden)")
        for note in notes:  # a TOML comment: the output stays a valid file
            print(f"# note: {note}")
    print(f"{args.file}: OK", file=sys.stderr)
    return EXIT_OK


# -- demo --------------------------------------------------------------------------------


def register(commands: Commands) -> None:
    """``wedguard config check``: its arguments."""
    p = commands.add("config", "configuration files")
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = csub.add_parser(
        "check",
        help="validate FILE and print the effective configuration",
        parents=[commands.common],
    )
    c.add_argument("file", metavar="FILE", type=path_type("a configuration file path"))
    c.add_argument("--json", action="store_true", help="print it as JSON")
    c.add_argument(
        "--no-env",
        action="store_true",
        help="check the file away from its host: do not require the secrets' "
        "environment variables, nor the directories of its paths",
    )
    c.set_defaults(func=cmd_config)
