"""Ctrl-C in ``wedguard copy`` prints what the session did before "interrupted"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import wedguard as wg

SRC = str(Path(wg.__file__).resolve().parent.parent)


def test_ctrl_c_prints_the_session_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEDGUARD_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["WEDGUARD_RUN_DIR"] = str(tmp_path / "run")
    env.pop("XDG_RUNTIME_DIR", None)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}.bin").write_bytes(os.urandom(200_000))
    config = tmp_path / "wedguard.toml"
    config.write_text('sources = []\n[calendar]\npreset = "none"\n[guard]\nrate = "300kB/s"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "wedguard", "copy", str(src), str(dst), "-c", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # until the copy is under way (its status shows up)
            status = subprocess.run(
                [sys.executable, "-m", "wedguard", "status", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            if json.loads(status.stdout or "{}").get("guards"):
                break
            assert time.monotonic() < deadline, "the copy did not start"
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert err.strip() == "wedguard: interrupted"
    (summary,) = [line for line in out.splitlines() if line.strip()]
    assert summary.startswith("copied "), out
    assert "file(s)" in summary


def test_ctrl_c_on_wedguard_run_prints_the_commands_report(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) reaches the command, whose exit code passes through; wedguard run
    then says what the command did under the guard and that it was interrupted."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEDGUARD_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["WEDGUARD_RUN_DIR"] = str(tmp_path / "run")
    env.pop("XDG_RUNTIME_DIR", None)
    env.pop("PYTHONWARNINGS", None)
    config = tmp_path / "wedguard.toml"
    config.write_text('sources = []\n[calendar]\npreset = "none"\n[guard]\nrate = "1MB/s"\n')
    child = "import sys, time\nprint('ready', flush=True)\ntime.sleep(30)\n"
    argv = [sys.executable, "-m", "wedguard", "run", "-c", str(config), "--"]
    proc = subprocess.Popen(
        [*argv, sys.executable, "-c", child],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == "wedguard: interrupted", err
    report = [line for line in lines if line.startswith(os.path.basename(sys.executable) + " ")]
    assert len(report) == 1, err
    assert "exit -2 after" in report[0]
