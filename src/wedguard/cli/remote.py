"""Talking to running guards: their control sockets and the fleet's stop flag.

``stop``, ``resume``, ``status`` and ``throttle`` find the guards started by this
command on this machine through their status files (or ``--socket``) and send each a
line on its control socket (:mod:`wedguard.runtime.control_socket`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from wedguard import _checks
from wedguard.cli.args import config_option, path_type, socket_type
from wedguard.config import Config
from wedguard.jobs import running_guards
from wedguard.runtime.control_socket import UntrustedPeerError, send_command

__all__ = ["fleet", "print_replies", "sockets", "target_options", "tell", "tell_all"]


def sockets(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(label, socket path) of the guards to talk to: ``--socket``, else every running
    guard started by this command that serves one (``--pid`` narrows it)."""
    given = getattr(args, "socket", None)
    if given:
        _checks.socket_path(given, "--socket")
        return [(given, given)]
    pid = getattr(args, "pid", None)
    return [
        (f"pid {g['pid']}", str(g["control"]))
        for g in running_guards()
        if g.get("control") and (pid is None or g["pid"] == pid)
    ]


def tell(path: str, line: str) -> dict[str, Any]:
    """Send ``json <line>`` to a control socket; the JSON reply (``ok`` False on failure)."""
    try:
        reply = send_command(path, f"json {line}", timeout=5.0)
        data: Any = json.loads(reply)
    except UntrustedPeerError as exc:
        return {"ok": False, "error": str(exc)}
    except (OSError, ValueError) as exc:
        return {"ok": False, "error": f"cannot reach {path}: {exc}"}
    if not isinstance(data, dict):
        return {"ok": False, "error": f"{path}: not a wedguard control socket"}
    return dict(data)


def tell_all(args: argparse.Namespace, line: str) -> list[tuple[str, dict[str, Any]]]:
    """``line`` sent to every guard :func:`sockets` finds: (label, reply) pairs."""
    return [(label, tell(path, line)) for label, path in sockets(args)]


def print_replies(replies: list[tuple[str, dict[str, Any]]]) -> bool:
    """Each reply as a line (failures on stderr); False when one failed."""
    ok = True
    for label, reply in replies:
        if reply.get("ok"):
            print(f"{label}: {reply.get('message', 'ok')}")
        else:
            ok = False
            print(f"wedguard: {label}: {reply.get('error', 'failed')}", file=sys.stderr)
    return ok


def fleet(config: Config, action: str, reason: str = "") -> bool:
    """Raise (``stop``), lower (``resume``) or show (``status``) the fleet's stop flag
    of ``[redis]``; False when Redis could not be reached."""
    prefix = config.redis.get("prefix", "wedguard") if config.redis else "wedguard"
    coord = config.coordinator()
    try:
        if action == "stop":
            ok = bool(coord.stop(reason))
            text = f"fleet stop flag {prefix}:stop raised: every host's guard stops"
        elif action == "resume":
            ok = bool(coord.resume())
            text = f"fleet stop flag {prefix}:stop lowered: every host's guard resumes"
        else:
            flag = coord.stop_flag
            raised = flag.refresh()
            ok = bool(coord.link.online)
            state = f"raised ({flag.reason})" if raised else "lowered"
            text = f"fleet stop flag {prefix}:stop: {state}"
    finally:
        coord.close()
    if ok:
        print(text)
    else:
        print(
            f"wedguard: fleet stop flag {prefix}:stop: Redis could not be reached", file=sys.stderr
        )
    return ok


def target_options(p: argparse.ArgumentParser) -> None:
    """``--stop-file``, ``--socket`` and ``--config``: which guards ``stop``,
    ``resume`` and ``status`` address."""
    p.add_argument(
        "--stop-file",
        metavar="PATH",
        type=path_type(),
        help="the stop file (default: the config's, else the run directory's)",
    )
    p.add_argument(
        "--socket",
        metavar="PATH",
        type=socket_type,
        help="talk to the guard serving this control socket only",
    )
    config_option(p)
