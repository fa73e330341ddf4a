"""Argument types and helpers the commands' parsers share.

Each command module has a ``register(commands)`` that adds its subcommand through a
:class:`Commands`; the types turn bad input into one usage line (exit code 2).

Example::

    >>> whole_type(1, 10)("3")
    3
    >>> text_type("nightly")
    'nightly'
"""

from __future__ import annotations

import argparse
from typing import Any

from wedguard import _checks
from wedguard.errors import ConfigError

__all__ = [
    "Commands",
    "Parser",
    "config_option",
    "path_type",
    "socket_type",
    "text_type",
    "whole_type",
]


def path_type(what: str = "a file path") -> Any:
    """An argparse ``type``: a path without NUL characters, not empty (exit 2)."""

    def convert(text: str) -> str:
        try:
            return _checks.path(text, "", what)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {exc.expected}") from None

    return convert


def socket_type(text: str) -> str:
    """An argparse ``type``: a control socket's path (short enough for a Unix socket)."""
    try:
        return _checks.socket_path(text, "")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {exc.expected}") from None


def text_type(text: str) -> str:
    """An argparse ``type``: one line of UTF-8 text (a reason, a name)."""
    if any(c in text for c in "\x00\r\n"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected one line of text")
    try:
        text.encode("utf-8")
    except UnicodeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected UTF-8 text") from None
    return text


def whole_type(minimum: int, maximum: int = 2**31 - 1) -> Any:
    """An argparse ``type``: a whole number from ``minimum`` to ``maximum``."""

    def convert(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = minimum - 1
        if not minimum <= number <= maximum:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected a whole number from {minimum} to {maximum}"
            )
        return number

    return convert


class Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit code 2), pointing to ``--help``."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class Commands:
    """Adds the subcommands of the ``wedguard`` parser, each with the shared options
    (``--debug``) of ``common``."""

    def __init__(self, sub: Any, common: argparse.ArgumentParser) -> None:
        self.sub = sub
        self.common = common

    def add(self, name: str, help: str) -> argparse.ArgumentParser:
        """A new subcommand ``name``; ``help`` is also its description."""
        parser: argparse.ArgumentParser = self.sub.add_parser(
            name, help=help, description=help, parents=[self.common]
        )
        return parser


def config_option(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` (``-c``): the configuration file a command reads."""
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        type=path_type("a configuration file path"),
        help="a wedguard.toml (default: $WEDGUARD_CONFIG, else built-in defaults)",
    )
