"""guard.pipe and the `wedguard pipe` filter (pipe_main)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

import wedguard as wg
from page_cache import SyncSpy, pages_of, resident_pages
from wedguard.cli.pipe import pipe_main
from wedguard.io.process import pipe_guarded
from wedguard.testing import FakeClock


def fake_guard(rate: str = "1MB/s", **kwargs: Any) -> wg.Guard:
    return wg.Guard(rate=rate, calendar=None, sources=[], sinks=[], clock=FakeClock(), **kwargs)


def test_pipe_copies_every_byte_at_the_guard_rate() -> None:
    data = os.urandom(3_000_000)
    guard = fake_guard()
    out = io.BytesIO()
    assert guard.pipe(io.BytesIO(data), out) == len(data)
    assert out.getvalue() == data
    # 3 MB at 1 MB/s after the 0.2 s burst
    assert guard.clock.monotonic() == pytest.approx(2.8, abs=0.07)


def test_pipe_runs_a_session_that_reports_the_bytes() -> None:
    sink = wg.testing.RecordingSink()
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[sink], clock=FakeClock())
    guard.pipe(io.BytesIO(b"x" * 1000), io.BytesIO(), name="upload")
    reports = sink.of_kind("session")
    assert [r.name for r in reports] == ["upload"]
    assert reports[0].bytes == 1000


def test_pipe_stops_between_whole_chunks() -> None:
    """An emergency stop leaves dst holding a prefix made of whole chunks."""
    guard = fake_guard(rate="off")
    data = bytes(range(256)) * 1000
    written = io.BytesIO()

    class StopAfterTwo(io.BytesIO):
        def write(self, b: Any) -> int:
            n = written.write(b)
            if written.tell() >= 2 * 4096:
                guard.stop("incident")
            return n

    with pytest.raises(wg.EmergencyStop, match="incident"):
        guard.pipe(io.BytesIO(data), StopAfterTwo(), chunk_size=4096)
    assert written.getvalue() == data[: 2 * 4096]


def test_pipe_forwards_what_is_available_without_waiting_for_a_full_chunk() -> None:
    """A slow producer: its first bytes go through before it has finished."""
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    r, w = os.pipe()
    got = threading.Event()
    chunks: list[bytes] = []

    class Dst:
        def write(self, b: Any) -> int:
            chunks.append(bytes(b))
            got.set()
            return len(b)

    src = os.fdopen(r, "rb")
    t = threading.Thread(target=guard.pipe, args=(src, Dst()), daemon=True)
    t.start()
    os.write(w, b"first")
    assert got.wait(5), "the first bytes were held back"
    os.write(w, b"second")
    os.close(w)
    t.join(5)
    src.close()
    assert b"".join(chunks) == b"firstsecond"


def test_pipe_completes_short_writes_and_plain_readers() -> None:
    data = b"0123456789" * 100

    class Reader:
        def __init__(self) -> None:
            self.buf = io.BytesIO(data)

        def read(self, n: int) -> bytes:
            return self.buf.read(min(n, 7))

    class ShortWriter:
        def __init__(self) -> None:
            self.out = bytearray()

        def write(self, b: Any) -> int:
            piece = bytes(b[:3])
            self.out += piece
            return len(piece)

    dst = ShortWriter()
    assert pipe_guarded(fake_guard(), Reader(), dst, flush=False) == len(data)
    assert bytes(dst.out) == data


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": "big"}, "chunk_size"),
        ({"src": object()}, "src"),
        ({"dst": object()}, "dst"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"src": io.BytesIO(b"x"), "dst": io.BytesIO(), **kwargs}
    with pytest.raises(wg.ConfigError) as info:
        fake_guard().pipe(**args)
    assert info.value.field == field


def test_pipe_main_filters_stdin_to_stdout() -> None:
    data = os.urandom(100_000)
    out = io.BytesIO()
    assert pipe_main(["--rate", "10MB/s"], stdin=io.BytesIO(data), stdout=out) == 0
    assert out.getvalue() == data


def test_pipe_main_usage_and_configuration_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert pipe_main(["--rate", "fast"], stdin=io.BytesIO(), stdout=io.BytesIO()) == 2
    assert "rate: 'fast'" in capsys.readouterr().err
    assert pipe_main(["--chunk-size", "0"], stdin=io.BytesIO(), stdout=io.BytesIO()) == 2
    assert pipe_main(["--bogus"], stdin=io.BytesIO(), stdout=io.BytesIO()) == 2


def test_pipe_main_writes_a_file_on_stdout_back_as_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wedguard pipe > app.dump``: the file is written back window by window while it
    is written (default 1 MiB) and leaves the page cache, every byte in place;
    ``--writeback off`` (any case) leaves it to the kernel; a pipe or an in-memory
    stdout is written as it is."""
    data = os.urandom(12 << 20)
    spy = SyncSpy(monkeypatch)
    for name, extra, cached in (("windowed", [], False), ("plain", ["--writeback", "OFF"], True)):
        path = tmp_path / name
        before = len(spy.starts)
        with open(path, "wb") as out:
            assert pipe_main(extra, stdin=io.BytesIO(data), stdout=out) == 0
        started = len(spy.starts) - before
        assert started == 0 if cached else started >= 11  # as it went, not only at the end
        resident = resident_pages(path)  # before reading it back
        assert path.read_bytes() == data
        assert (
            resident > pages_of(len(data)) // 2 if cached else resident < pages_of(len(data)) // 4
        )
    memory = io.BytesIO()
    assert pipe_main(["--writeback", "256KiB"], stdin=io.BytesIO(data), stdout=memory) == 0
    assert memory.getvalue() == data


def test_pipe_main_refuses_a_bad_writeback(capsys: pytest.CaptureFixture[str]) -> None:
    assert pipe_main(["--writeback", "10"], stdin=io.BytesIO(), stdout=io.BytesIO()) == 2
    err = capsys.readouterr().err
    assert "--writeback: '10' is not valid; expected a size of at least 4 KiB" in err


def test_pipe_main_exits_3_when_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    import wedguard.cli.pipe as process

    def stopped_guard(args: Any) -> wg.Guard:
        g = fake_guard()
        g.stop("incident")
        return g

    monkeypatch.setattr(process, "_pipe_guard", stopped_guard)
    assert pipe_main([], stdin=io.BytesIO(b"data"), stdout=io.BytesIO()) == 3


def test_pipe_main_serves_the_control_socket() -> None:
    with tempfile.TemporaryDirectory(prefix="wg") as d:
        path = Path(d) / "p.sock"
        out = io.BytesIO()
        assert pipe_main(["--control-socket", str(path)], stdin=io.BytesIO(b"x"), stdout=out) == 0
        assert out.getvalue() == b"x"
        assert not path.exists()  # closed with the guard


def test_wedguard_pipe_in_a_shell_pipeline(tmp_path: Path) -> None:
    """producer | wedguard pipe --rate ... | consumer, with real OS pipes."""
    data = os.urandom(300_000)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    code = "import sys; from wedguard.cli.pipe import pipe_main; sys.exit(pipe_main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with src.open("rb") as f:
        done = subprocess.run(
            [sys.executable, "-c", code, "--rate", "1MB/s"],
            stdin=f,
            capture_output=True,
            env=env,
            timeout=30,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


@pytest.mark.parametrize(
    ("sig", "code", "word"), [(2, 130, "interrupted"), (15, 143, "terminated")]
)
def test_wedguard_pipe_interrupted_says_what_it_did(sig: int, code: int, word: str) -> None:
    """Ctrl-C (or SIGTERM) on ``wedguard pipe``: the session's summary and one line on
    stderr, exit code 130 (143), no traceback."""
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("PYTHONWARNINGS", None)
    producer = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'x' * 50_000_000)"],
        stdout=subprocess.PIPE,
    )
    assert producer.stdout is not None
    proc = subprocess.Popen(
        [sys.executable, "-m", "wedguard", "pipe", "--rate", "1MB/s", "--chunk-size", "100kB"],
        stdin=producer.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    producer.stdout.close()
    try:
        assert proc.stdout is not None
        got = proc.stdout.read(300_000)  # the pipe is under way
        time.sleep(0.3)
        proc.send_signal(signal.Signals(sig))
        rest, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        producer.kill()
        proc.wait()
        producer.wait()
    assert proc.returncode == code, err
    text = err.decode()
    assert "Traceback" not in text
    *report, last = [line for line in text.splitlines() if line.strip()]
    assert last == f"wedguard pipe: {word}"
    (summary,) = report
    assert summary.startswith("wedguard pipe: pipe: "), text
    assert "B in " in summary
    assert "(mean " in summary
    assert len(got) + len(rest) < 50_000_000
