"""``wedguard status``: the stop file and the running guards' decisions and reasons."""

from __future__ import annotations

import argparse
import contextlib
import json

from wedguard import _fs
from wedguard.cli.args import Commands
from wedguard.cli.common import EXIT_OK, UsageError, check_stop_place, command_config
from wedguard.cli.remote import fleet, target_options, tell
from wedguard.jobs import running_guards
from wedguard.units import format_rate, format_size

__all__ = ["cmd_status", "register"]


def cmd_status(args: argparse.Namespace) -> int:
    """Print (or ``--json``) the stop file's state and each running guard's decision."""
    config = command_config(args.config)
    path = check_stop_place(config, args.stop_file, create=False)
    watch = _fs.StopFile(path)
    stopped = watch.present()
    ignored = watch.problem
    reason = ""
    if stopped:
        with contextlib.suppress(OSError):
            reason = _fs.read_file(path, limit=4096).decode(errors="replace").strip()
    guards = [] if args.socket else running_guards()
    if args.socket:
        guards = [{"pid": None, "command": "?", "control": args.socket}]
    for g in guards:  # the live answer from the control socket, when there is one
        if g.get("control"):
            live = tell(str(g["control"]), "status")
            if live.get("ok"):
                g["decision"] = live["decision"]
                g["reasons"] = live.get("reasons", live["decision"].get("reasons", []))
                g["sessions"] = live.get("sessions")
                g["children"] = live.get("children", [])
            elif args.socket:
                raise UsageError(live.get("error", f"cannot reach {args.socket}"))
            else:
                g["error"] = live.get("error", "no answer")
    if args.json:
        print(
            json.dumps(
                {"stop_file": str(path), "stopped": stopped, "reason": reason, "guards": guards}
                | ({"ignored": ignored} if ignored else {}),
                indent=2,
            )
        )
        return EXIT_OK
    state = f"present ({reason})" if stopped else "absent"
    if ignored:
        state = f"ignored: {ignored}"
    print(f"stop file {path}: {state}")
    if config.redis is not None and not args.socket:
        fleet(config, "status")
    if not guards:
        print("no running guards")
    for g in guards:
        d = g.get("decision", {})
        rate = d.get("rate")
        shown = format_rate(float(rate or 0))  # float("inf"): "unlimited"
        done = g.get("bytes")
        extra = "" if done is None else f", {format_size(done)} done"
        who = f"pid {g['pid']}" if g.get("pid") else str(g.get("control"))
        print(f"{who}: {g.get('command', '?')} since {g.get('started', '?')}{extra}")
        state = " (stopped)" if d.get("stopped") else " (paused)" if d.get("paused") else ""
        print(f"  {d.get('level')}/{d.get('verdict')} at {shown}{state}")
        for r in g.get("reasons", d.get("reasons", [])):
            print(f"  - {r}")
        if g.get("error"):
            print(f"  control socket: {g['error']}")
        for c in g.get("children") or []:
            print(f"  child {c.get('name')} (pid {c.get('pid')}): {c.get('state')}")
    return EXIT_OK


def register(commands: Commands) -> None:
    """``wedguard status``: its arguments."""
    p = commands.add("status", "the stop file and the running guards' decisions and reasons")
    target_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
