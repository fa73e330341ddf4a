"""Fuzzing the command line: any arguments end with exit status 0 or 2 and a one-line
message, never a traceback.

Arguments are drawn for each command from its real options with right and wrong
values (NUL characters, surrogates, huge numbers, paths too long for a socket, text
that is no rate, time or level). ``wedguard.cli.main`` runs in the process with its
output captured, for speed; a few cases run ``python -m wedguard`` in a subprocess.
The example count is the constant below; ``docs/reliability.md`` quotes it.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import test_fuzz_config
import test_fuzz_constructors
from wedguard.cli import main

#: examples (see docs/reliability.md, "Bad input")
ARGV = 300

ROOT = Path(__file__).resolve().parent.parent
SRC = str(ROOT / "src")
_TMP = Path(tempfile.mkdtemp(prefix="wedguard-fuzz-cli-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
_RUN = _TMP / "run"

CONFIGS = {
    "good": '[guard]\nrate = "5MB/s"\n[calendar]\nrules = "Mon-Fri 06:00-22:00 peak 10Mbit/s"\n',
    "overlap": '[calendar]\nrules = """\n06:00-22:00 peak 10Mbit/s\nSat 08:00-12:00 blackout\n"""\n',
    "badrate": '[guard]\nrate = "10 parsecs"\n',
    "nul": '[guard]\nstop_file = "/run/a\\u0000b"\n',
    "port": '[[sinks]]\ntype = "prometheus"\nport = 70000\n',
    "redis": '[redis]\nurl = "redis://localhost:99999/0"\n',
    "unknown": "[gaurd]\nrate = 1\n",
}
for _name, _text in CONFIGS.items():
    (_TMP / f"{_name}.toml").write_text(_text)
(_TMP / "latin1.toml").write_bytes(b'[guard]\nstop_file = "/run/caf\xe9"\n')
(_TMP / "dir.toml").mkdir(exist_ok=True)

NASTY = ["", " ", "\x00", "a\x00b", "\udcff", "-1", "0", "99999999999999999999999", "nan",
         "inf", "1e400", "garbage", "--", "-", "x" * 300]  # fmt: skip
FILES = [str(p) for p in sorted(_TMP.glob("*.toml"))] + [str(_TMP / "missing.toml")]
PATHS = [str(_TMP / "p"), str(_TMP / ("s" * 120)), str(_TMP / "run" / "stop")]
VALUES: dict[str, list[str]] = {
    "--config": FILES,
    "--at": ["2026-06-13T09:30", "09:30", "Sat 09:30", "2026-06-13 09:30+01:00", "25:00",
             "2026-13-40", "Xyz 09:30"],
    "--week": [],
    "--history": PATHS,
    "--duration": ["2h", "30m", "-1h", "1e400s", "0"],
    "--count": ["1", "3", "-1", "0", "1001"],
    "--metric": ["cpu.percent", "db.latency_s"],
    "--tz": ["UTC", "Europe/London", "Nowhere/Land", "+01:00"],
    "--rules": ["blackout", "peak 10Mbit/s", "open", "Mon blackout", "peak 1e400MB/s",
                "09:00-10:00 peak"],
    "--json": [],
    "--name": ["photos", "a\nb"],
    "--last": ["0", "5", "-3"],
    "--plot": PATHS,
    "--html": PATHS,
    "--stop-file": PATHS,
    "--socket": PATHS,
    "--pid": ["1", str(os.getpid()), "0", "-5", "4294967296"],
    "--reason": ["maintenance", "line\nbreak"],
    "--panic": [],
    "--no-env": [],
    "--debug": [],
}  # fmt: skip
COMMANDS: dict[str, list[str]] = {
    "calendar": ["--at", "--week", "--config"],
    "windows": ["--history", "--config", "--duration", "--count", "--metric", "--tz", "--rules",
                "--json"],
    "report": ["--history", "--config", "--name", "--last", "--json", "--plot", "--html"],
    "status": ["--stop-file", "--socket", "--config", "--json"],
    "stop": ["--stop-file", "--socket", "--config", "--reason", "--pid"],
    "resume": ["--stop-file", "--socket", "--config", "--pid"],
    "throttle": ["--pid", "--socket"],
    "config": ["--json", "--no-env"],
}  # fmt: skip
POSITIONAL = {"throttle": ["10MB/s", "off", "0", "fast"], "config": FILES}


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(sorted(COMMANDS)))
    argv = [command]
    if command == "config":
        argv.append(draw(st.sampled_from(["check", "show", ""])))
    if command in POSITIONAL:
        argv.append(draw(st.sampled_from(POSITIONAL[command] + NASTY)))
    for option in draw(st.lists(st.sampled_from(COMMANDS[command]), max_size=4, unique=True)):
        argv.append(option)
        if VALUES[option]:
            argv.append(draw(st.sampled_from(VALUES[option] + NASTY)))
    if draw(st.integers(0, 9)) == 0:
        argv.insert(draw(st.integers(0, len(argv))), draw(st.sampled_from([*NASTY, "--bogus"])))
    return argv


@contextlib.contextmanager
def in_tmp() -> Iterator[None]:
    """Run in the fuzz directory: a relative path that is accepted lands there."""
    cwd = os.getcwd()
    os.chdir(_TMP)
    try:
        yield
    finally:
        os.chdir(cwd)


def run(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    env = {"WEDGUARD_RUN_DIR": str(_RUN), "WEDGUARD_CONFIG": ""}
    with (
        in_tmp(),
        mock.patch.dict(os.environ, env),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage errors and --help
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=ARGV, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argvs())
def test_any_arguments_exit_0_or_2_without_a_traceback(argv: list[str]) -> None:
    """Property: exit status 0 or 2 (1 only when a guard given by --socket cannot be
    reached: a failure, not bad input); an error is a message on stderr, not a
    traceback (unless --debug asked for one)."""
    code, _out, err = run(argv)
    assert code in (0, 2) or (code == 1 and "cannot reach" in err), (argv, code, err)
    if "--debug" not in argv:
        assert "Traceback" not in err, (argv, err)
    if code == 2:
        assert err.strip(), argv


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["windows", "--rules", "garbage"], "--rules: 'garbage'"),
        (["throttle", "1e-300"], "RATE: '1e-300'"),
        (["windows", "--rules", "Mon blackout"], "--rules: 'Mon blackout'"),
        (["stop", "--stop-file", "a\x00b"], "--stop-file"),
        (["resume", "--stop-file", "x" * 300], "255 per name"),
        (["stop", "--stop-file", str(_RUN / "s"), "--reason", "\udcff"], "--reason"),
        (["status", "--socket", str(_TMP / ("s" * 120))], "107 bytes"),
        (["report", "--last", "-3", "--history", str(_TMP / "h.db")], "--last"),
        (["windows", "--count", "0", "--history", str(_TMP / "h.db")], "--count"),
        (["config", "check", "a\x00b"], "NUL"),
        (["config", "check", str(_TMP / "latin1.toml")], "UTF-8"),
        (["config", "check", str(_TMP / "port.toml")], "sinks[0].port: 70000"),
        (["config", "check", str(_TMP / "redis.toml")], "redis.url"),
        (["calendar", "--config", str(_TMP / "nul.toml")], "guard.stop_file"),
    ],
)
def test_bad_arguments_are_named(argv: list[str], says: str) -> None:
    code, out, err = run(argv)
    assert code == 2, (code, out, err)
    assert says in err, err
    assert "Traceback" not in err


def test_config_check_and_calendar_note_overlapping_rules() -> None:
    config = str(_TMP / "overlap.toml")
    code, out, err = run(["config", "check", config])
    assert code == 0, err
    assert (
        "# note: rules 'Mon-Sun 06:00-22:00 peak 10Mbit/s' and 'Sat 08:00-12:00 blackout' overlap"
    ) in out
    assert "the most restrictive level wins, then the lowest rate cap" in out
    code, out, err = run(["config", "check", config, "--json"])
    assert code == 0, err
    assert "wedguard: note: rules" in err
    code, out, err = run(["calendar", "--config", config, "--at", "2026-06-13T09:00+00:00"])
    assert code == 0, err
    assert "BLACKOUT" in out
    assert "overlap" in err


# -- a few runs of the real program ----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["config", "check", "{latin1}"],
        ["copy", "--config", "{latin1}", "{src}", "{dst}"],
        ["pipe", "--config", "{latin1}"],
        ["windows", "--rules", "garbage", "--history", "{src}"],
        ["copy", "--config", "{nul}", "{src}", "{dst}"],
    ],
)
def test_the_program_exits_2_without_a_traceback(tmp_path: Path, args: list[str]) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 100)
    names = {
        "latin1": str(_TMP / "latin1.toml"),
        "nul": str(_TMP / "nul.toml"),
        "src": str(src),
        "dst": str(tmp_path / "dst.bin"),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEDGUARD_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["WEDGUARD_RUN_DIR"] = str(tmp_path / "run")
    proc = subprocess.run(
        [sys.executable, "-m", "wedguard", *(a.format(**names) for a in args)],
        env=env,
        input=b"",
        capture_output=True,
        timeout=60,
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "dst.bin").exists()


# -- the page that reports the suite -----------------------------------------------------------


def test_the_reliability_page_quotes_the_counts() -> None:
    """docs/reliability.md gives the examples each property runs: the constants."""
    page = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    section = page.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    counts: dict[str, Any] = {
        "documents": test_fuzz_config.DOCUMENTS,
        "files": test_fuzz_config.FILES,
        "bytes": test_fuzz_config.BYTES,
        "per constructor": test_fuzz_constructors.PER_CONSTRUCTOR,
        "calendar texts": test_fuzz_constructors.CALENDAR_TEXTS,
        "command lines": ARGV,
    }
    for label, count in counts.items():
        assert re.search(rf"\|\s*{re.escape(label)}\s*\|\s*{count}\s*\|", section), label
    assert "tracebacks: 0" in section
