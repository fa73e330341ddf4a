"""The impact benchmark's own parts: statistics, schedule, production, calendar, report.

The benchmark itself is run by hand (``nox -s bench_impact``); these tests check the
pieces whose mistakes would silently bend its figures: the quantiles and the bootstrap,
the open-loop schedule, the latency histogram production exposes (read back through
:class:`wedguard.sources.ServiceLatencySource`), the blackout calendar under a real
:class:`wedguard.Guard`, priority hygiene, and the per-repeat ratios of the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wedguard as wg
from script_helpers import load_script
from wedguard.sources import ServiceLatencySource
from wedguard.sources.service import histogram_quantile, parse_histogram
from wedguard.testing import FakeClock

HERE = Path(__file__).resolve().parent.parent / "benchmarks" / "impact"
sys.path.insert(0, str(HERE))

import harness  # noqa: E402


def load(name: str) -> ModuleType:
    return load_script(HERE / f"{name}.py", f"impactbench_{name}")


service = load("service")
loadgen = load("loadgen")
backup = load("backup")
run = load("run")

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


# -- statistics -------------------------------------------------------------------------


@given(st.lists(finite, min_size=2, max_size=50))
def test_quantile_matches_the_inclusive_method(values: list[float]) -> None:
    """The quantile is type 7 (statistics' "inclusive"), the usual percentile."""
    s = sorted(values)
    expected = statistics.quantiles(values, n=100, method="inclusive")
    for k in (50, 95, 99):
        assert harness.quantile(s, k / 100) == pytest.approx(expected[k - 1], abs=1e-6)


@given(st.lists(finite, min_size=1, max_size=40), st.floats(0, 1), st.floats(0, 1))
def test_quantile_is_monotone_and_bounded(values: list[float], q1: float, q2: float) -> None:
    s = sorted(values)
    lo, hi = sorted((q1, q2))
    assert s[0] <= harness.quantile(s, lo) <= harness.quantile(s, hi) <= s[-1]


def test_quantile_edges() -> None:
    assert math.isnan(harness.quantile([], 0.5))
    assert harness.quantile([3.0], 0.99) == 3.0
    with pytest.raises(ValueError, match=r"q=1\.5"):
        harness.quantile([1.0, 2.0], 1.5)


def test_bootstrap_of_a_scaled_copy_finds_the_scale() -> None:
    """Treated latencies that are exactly 1.5x the baseline: ratio 1.5 inside its interval."""
    base = [0.001 * (1 + (i * 37 % 101) / 50) for i in range(400)]
    pairs = [([1.5 * x for x in base], base)] * 3
    ratio, lo, hi = harness.bootstrap_ratio(pairs, 0.95, resamples=200)
    assert ratio == pytest.approx(1.5)
    assert lo < 1.5 < hi
    assert hi - lo < 0.3


def test_bootstrap_of_identical_runs_includes_one() -> None:
    base = [0.001 * (1 + (i * 53 % 97) / 40) for i in range(300)]
    ratio, lo, hi = harness.bootstrap_ratio([(base, base), (base, base)], 0.99, resamples=200)
    assert ratio == pytest.approx(1.0)
    assert lo <= 1.0 <= hi


def test_bootstrap_pools_repeats_geometrically() -> None:
    """Repeat ratios 2 and 0.5 pool to 1: each repeat is taken against its own baseline."""
    base = [1.0] * 20
    ratio, _, _ = harness.bootstrap_ratio([([2.0] * 20, base), ([0.5] * 20, base)], 0.5)
    assert ratio == pytest.approx(1.0)
    assert all(math.isnan(x) for x in harness.bootstrap_ratio([], 0.5))


def test_spread_and_window_quantiles() -> None:
    assert harness.spread([1.2, math.nan, 0.9]) == (0.9, 1.2)
    assert all(math.isnan(x) for x in harness.spread([math.nan]))
    recs = [(10.0 + i * 0.1, float(i)) for i in range(30)]  # 3 s of records, 10 per second
    got = harness.window_quantiles(recs, 10.0, 1.0, 0.5)
    assert [t for t, _ in got] == [0.5, 1.5, 2.5]
    assert got[0][1] == pytest.approx(4.5)
    assert harness.window_quantiles(recs, 12.0, 1.0, 0.5)[0][1] == pytest.approx(24.5)


def test_dominated() -> None:
    curve = [(0.4, 1.2), (0.9, 2.0)]
    assert harness.dominated((0.3, 1.5), curve)
    assert not harness.dominated((0.3, 1.1), curve)
    assert not harness.dominated((0.95, 3.0), curve)  # keeps more than any curve point
    assert harness.dominated((0.3, 1.15), curve, tolerance=0.1)


# -- the open-loop schedule -----------------------------------------------------------------


@given(st.floats(1, 500), st.floats(0.5, 5), st.integers(0, 100))
def test_schedule_is_poisson_and_inside_the_window(rate: float, duration: float, seed: int) -> None:
    times = loadgen.schedule(rate, 100.0, duration, seed)
    assert times == sorted(times)
    assert all(100.0 < t < 100.0 + duration for t in times)
    assert times == loadgen.schedule(rate, 100.0, duration, seed)  # reproducible
    mean = rate * duration  # a Poisson count: within 6 sigma (and 3 for tiny means)
    assert abs(len(times) - mean) <= 6 * math.sqrt(mean) + 3


def test_schedule_rejects_a_bad_rate() -> None:
    with pytest.raises(ValueError, match="rate=0"):
        loadgen.schedule(0, 0.0, 1.0, 1)


# -- production -----------------------------------------------------------------------------


@given(st.lists(st.floats(0.0003, 2.0), min_size=50, max_size=300))
def test_histogram_quantiles_within_a_bucket(latencies: list[float]) -> None:
    """The exposed histogram gives each percentile to within one bucket (x1.12)."""
    h = service.Histogram(harness.BUCKETS)
    for x in latencies:
        h.observe(x)
    buckets = parse_histogram(h.render(harness.HISTOGRAM), harness.HISTOGRAM)
    assert buckets[math.inf] == len(latencies)
    s = sorted(latencies)
    for q in (0.5, 0.95):
        got = histogram_quantile(q, buckets)
        assert got is not None
        # the true quantile's neighbours bound it; a bucket's width is 12 %
        lo = s[max(0, math.ceil(q * len(s)) - 2)]
        hi = s[min(len(s) - 1, math.ceil(q * len(s)))]
        assert lo / 1.13 <= got <= hi * 1.13


def test_histogram_buckets_are_fine_and_increasing() -> None:
    b = harness.BUCKETS
    assert all(x < y for x, y in itertools.pairwise(b))
    assert b[0] <= 0.0003
    assert b[-1] >= 2.0
    assert max(y / x for x, y in itertools.pairwise(b)) < 1.13


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(64 * harness.BLOCK))
    return path


def test_open_uncached_reads_aligned_blocks(data_file: Path) -> None:
    fd, direct = harness.open_uncached(data_file)
    try:
        assert isinstance(direct, bool)
        prod_fd = os.pread(os.open(data_file, os.O_RDONLY), harness.BLOCK, 0)
        import mmap

        buf = mmap.mmap(-1, harness.BLOCK)
        assert os.preadv(fd, [buf], 0) == harness.BLOCK
        assert bytes(buf) == prod_fd
        harness.drop_pages(fd)
    finally:
        os.close(fd)


def test_ensure_data_makes_a_compressible_file_once(tmp_path: Path) -> None:
    import zlib

    path = harness.ensure_data(tmp_path / "d.bin", 2 << 20)
    assert path.stat().st_size == 2 << 20
    chunk = path.read_bytes()[: 1 << 20]
    assert 0.4 < len(zlib.compress(chunk, 1)) / len(chunk) < 0.8
    mtime = path.stat().st_mtime_ns
    assert harness.ensure_data(path, 1 << 20).stat().st_mtime_ns == mtime


def test_service_and_load_generator_end_to_end(data_file: Path) -> None:
    """Real HTTP on 127.0.0.1: the open-loop client's latencies, and /metrics read by
    ServiceLatencySource, see the same requests."""
    prod = service.Production(data_file)
    server = ThreadingHTTPServer(("127.0.0.1", 0), service.make_handler(prod))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    port = server.server_address[1]
    try:
        src = ServiceLatencySource(
            f"http://127.0.0.1:{port}/metrics", histogram=harness.HISTOGRAM, timeout=2.0
        )
        assert src.sample() == {"api.latency_s.idle": 1.0}
        start = loadgen.time.monotonic() + 0.05
        times = loadgen.schedule(100.0, start, 0.5, 3)
        out, failures = asyncio.run(loadgen.run(port, times, 2.0, 16))
        assert failures == 0
        assert len(out) == 2 * len(times)
        scheduled, lats = list(out[0::2]), list(out[1::2])
        assert sorted(scheduled) == times
        assert all(0 < x < 2.0 for x in lats)
        sample = src.sample()
        assert sample["api.latency_s.requests"] == len(times)
        # the server's own p95 cannot exceed the client's, which adds the network
        assert sample["api.latency_s"] <= harness.percentiles(lats)[1] * 1.13 + 0.001
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        os.close(prod.fd)


def test_priority_reset_in_a_child() -> None:
    """A process started under nice 19 / idle I/O goes back to nice 0 / best effort."""
    code = (
        "import harness, json; harness.make_low_priority(); "
        "print(json.dumps(harness.reset_priority()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True, timeout=30
    )
    got = json.loads(out.stdout)
    assert got["io_class"] in (harness.IOPRIO_CLASS_BE, -1)
    if os.geteuid() == 0:
        assert got["nice"] == 0
    else:
        assert got["nice"] == os.getpriority(os.PRIO_PROCESS, 0) or got["nice"] == 19


# -- the blackout calendar under a real guard ---------------------------------------------


def test_blackout_calendar_pauses_and_resumes_a_guard() -> None:
    t0 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    clock = FakeClock(start=t0)
    cal = backup.RunCalendar(t0 + timedelta(seconds=4), t0 + timedelta(seconds=8))
    w = cal.at(t0 + timedelta(seconds=5))
    assert w.level is wg.Level.BLACKOUT
    assert w.rate == 0.0
    assert cal.at(t0).end == cal.start
    assert cal.at(t0 + timedelta(seconds=9)).start == cal.end
    guard = wg.Guard(rate="10MB/s", calendar=cal, sources=[], sinks=[], breaker=None, clock=clock)
    times = []
    with guard.session("bench") as s:
        for _ in range(100):  # 10 s of work at 10 MB/s, the blackout from 4 s to 8 s
            s.throttle(1_000_000)
            times.append(clock.monotonic())
            assert not cal.start <= clock.now() < cal.end  # nothing goes in the blackout
    assert guard.decision().level is wg.Level.OPEN
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) >= 4.0  # paused through the blackout...
    assert times[-1] - times[0] < 15.0  # ...then resumed at full rate


# -- the report -----------------------------------------------------------------------------


def fake_run(name: str, repeat: int, scale: float, throughput: float) -> dict[str, Any]:
    lats = [0.002 * scale * (1 + i / 100) for i in range(100)]
    p50, p95, p99 = harness.percentiles(lats)
    return {
        "scenario": name,
        "repeat": repeat,
        "latencies": lats,
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "throughput": throughput,
        "flagged": False,
        "outside_cores": 0.1,
    }


def test_analyse_takes_ratios_against_the_same_repeat() -> None:
    scs = [
        {"name": "a", "what": "alone"},
        {"name": "b", "what": "unguarded"},
        {"name": "e", "what": "guarded"},
    ]
    runs = [
        fake_run("a", 0, 1.0, 0.0),
        fake_run("b", 0, 1.5, 100.0),
        fake_run("e", 0, 1.1, 40.0),
        # a slower machine in repeat 1: everything x2, the ratios unchanged
        fake_run("a", 1, 2.0, 0.0),
        fake_run("b", 1, 3.0, 50.0),
        fake_run("e", 1, 2.2, 20.0),
    ]
    s = run.analyse(runs, scs)
    assert s["e"]["p95_pooled"][0] == pytest.approx(1.1)
    assert s["e"]["p95_spread"] == pytest.approx((1.1, 1.1))
    assert s["b"]["p99_pooled"][0] == pytest.approx(1.5)
    assert s["e"]["share"] == pytest.approx(0.4)
    assert s["a"]["p50_pooled"][0] == pytest.approx(1.0)


def point(what: str, share: float, p95: float, p99: float) -> dict[str, Any]:
    return {"what": what, "share": share, "p95_pooled": (p95, 0, 0), "p99_pooled": (p99, 0, 0)}


def test_verdicts_judge_the_goal_and_domination() -> None:
    scs = [{"name": n} for n in ("c", "d", "e")] + [{"name": "g1", "sweep": 1.0}]
    summary = {
        "c": point("nice", 0.8, 1.3, 2.0),
        "d": point("static", 0.3, 1.02, 1.1),
        "e": point("defaults", 0.9, 1.25, 1.8),
        "g1": point("sweep", 0.35, 1.04, 1.2),
    }
    lines = run.verdicts(summary, scs)
    assert "met** by g1" in lines[0]
    assert "p95 yes, p99 yes" in lines[1]  # e keeps more than nice, with less inflation
    assert "p95 no, p99 no" in lines[2]  # the static limit is not beaten here
    summary["g1"] = point("sweep", 0.35, 1.06, 1.2)
    assert "not met" in run.verdicts(summary, scs)[0]


def test_scenarios_cover_the_issue() -> None:
    for quick in (False, True):
        names = [sc["name"] for sc in run.scenarios(quick)]
        assert names[:7] == ["a", "a2", "b", "c", "d", "e", "f"]
        sweep = [sc for sc in run.scenarios(quick) if sc.get("sweep") is not None]
        assert len(sweep) >= 2


def test_bootstrap_ratios_agree_with_one_at_a_time() -> None:
    base = [0.001 * (1 + (i * 37 % 101) / 50) for i in range(200)]
    pairs = [([1.2 * x for x in base], base), ([1.3 * x for x in base], base)]
    many = harness.bootstrap_ratios(pairs, (0.5, 0.95), resamples=50, seed=3)
    assert many[0.95] == harness.bootstrap_ratio(pairs, 0.95, resamples=50, seed=3)
    assert many[0.5][0] == pytest.approx(math.sqrt(1.2 * 1.3))


def test_history_pools_runs_geometrically() -> None:
    history = [
        {"date": "d1", "repeats": 3, "measure": 13.0, "outside": 1.0,
         "scenarios": {"a2": [0.0, 1.0, 1.0], "e": [0.4, 2.0, 1.5]}},
        {"date": "d2", "repeats": 3, "measure": 13.0, "outside": 1.2,
         "scenarios": {"a2": [0.0, 1.0, 1.0], "e": [0.6, 0.5, 1.5]}},
    ]  # fmt: skip
    assert run.across_runs(history, "e") == pytest.approx((0.5, 1.0, 1.5))
    assert run.across_runs(history, "zz") is None
    table = run.history_table(history)
    assert table[-1].startswith("| **all 2 runs**")
    assert "**1.00 / 1.50 @ 50%**" in table[-1]
    assert run.history_table([]) == ["(none yet)"]


def test_history_verdict_needs_two_runs() -> None:
    scs = [{"name": "e"}, {"name": "g1", "sweep": 1.0}]
    one = {"repeats": 3, "scenarios": {"e": [0.5, 1.0, 1.1], "g1": [0.9, 1.4, 1.5]}}
    assert run.history_verdict([one], scs) == []
    line = run.history_verdict([one, one], scs)[0]
    assert "6 repeats" in line
    assert "goal **met** by e" in line
    bad = {"repeats": 3, "scenarios": {"e": [0.5, 1.2, 1.1], "g1": [0.9, 1.4, 1.5]}}
    assert "goal **not met**" in run.history_verdict([one, bad], scs)[0]


def test_blackout_lines_say_whether_each_run_paused_and_resumed() -> None:
    ok = {"scenario": "f", "repeat": 0, "timeline": [
        [0.0, 0.0, 1e6, 0, 0], [1.0, 5e6, 0.0, 2, 2], [2.0, 5e6, 0.0, 2, 2], [3.0, 9e6, 1e6, 0, 0],
    ]}  # fmt: skip
    stuck = {"scenario": "f", "repeat": 1, "error": "Traceback...\nRuntimeError: boom\n",
             "timeline": [[0.0, 0.0, 1e6, 0, 0], [1.0, 5e6, 0.0, 2, 2], [2.0, 5e6, 0.0, 2, 2]]}  # fmt: skip
    lines = run.blackout_lines([ok, stuck, {"scenario": "a", "repeat": 0}])
    assert "Repeat 0" in lines[2]
    assert "paused and resumed." in lines[2]
    assert "**did not pause and resume**" in lines[3]
    assert "`RuntimeError: boom`" in lines[3]


# -- the stand-ins: SCHED_IDLE, small chunks, a backup that only sleeps ---------------------


def backup_json(tmp_path: Path, data: Path, *extra: str, seconds: float = 0.6) -> dict[str, Any]:
    """Run backup.py for ``seconds`` in its own process and return what it recorded."""
    tl = tmp_path / "tl.json"
    start = loadgen.time.monotonic() + 0.3
    cmd = [
        sys.executable, str(HERE / "backup.py"),
        "--data", str(data), "--out", str(tmp_path / "out.z"), "--timeline", str(tl),
        "--start-at", repr(start), "--stop-at", repr(start + seconds), *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        cmd,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=40,
        env=env,
        start_new_session=True,  # its own session, as the benchmark starts it
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(tl.read_text())
    return result


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(4 << 20))
    return path


def test_sched_idle_reaches_threads_started_before_and_after() -> None:
    """make_sched_idle sets every existing thread by its native id, and threads started
    afterwards inherit the policy."""
    code = (
        "import harness, json, threading\n"
        "ev = threading.Event()\n"
        "early = threading.Thread(target=ev.wait); early.start()\n"
        "harness.make_sched_idle()\n"
        "late = threading.Thread(target=ev.wait); late.start()\n"
        "print(json.dumps({'ids': [early.native_id, late.native_id],"
        " 'pol': harness.thread_policies()}))\n"
        "ev.set()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True, timeout=30
    )
    got = json.loads(out.stdout)
    policies = {int(k): v for k, v in got["pol"].items()}
    assert len(policies) >= 3
    assert set(got["ids"]) <= set(policies)
    assert set(policies.values()) == {harness.SCHED_IDLE}


def test_reset_priority_undoes_an_inherited_sched_idle() -> None:
    code = (
        "import harness, json; harness.make_sched_idle(); "
        "print(json.dumps(harness.reset_priority()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True, timeout=30
    )
    got = json.loads(out.stdout)
    if os.geteuid() == 0:
        assert got["policy"] == os.SCHED_OTHER
    assert got["policy"] in (os.SCHED_OTHER, harness.SCHED_IDLE)


def test_the_backup_runs_every_thread_in_sched_idle(tmp_path: Path, big_file: Path) -> None:
    """--sched-idle: the backup's threads (its loop and its recorder) all ran in
    SCHED_IDLE; without it, none did."""
    idle = backup_json(tmp_path, big_file, "--mode", "unguarded", "--sched-idle")
    assert idle["policies"] == [harness.SCHED_IDLE]
    assert idle["threads"] >= 2
    assert idle["policy"] == harness.SCHED_IDLE
    assert idle["bytes"] > 0
    normal = backup_json(tmp_path, big_file, "--mode", "unguarded")
    assert normal["policies"] == [os.SCHED_OTHER]


def test_a_guarded_backup_puts_the_guards_threads_in_sched_idle(
    tmp_path: Path, big_file: Path
) -> None:
    """Under a real Guard reading a real production's /metrics the sampler thread exists
    too, and it inherits SCHED_IDLE."""
    with production(big_file) as port:
        idle = backup_json(
            tmp_path, big_file, "--mode", "guard", "--port", str(port),
            "--ceiling", "50e6", "--sample-interval", "0.1", "--sched-idle",
        )  # fmt: skip
    assert idle["error"] == ""
    assert idle["bytes"] > 0
    assert idle["threads"] >= 3  # main, recorder, the guard's sampler
    assert idle["policies"] == [harness.SCHED_IDLE]


@contextlib.contextmanager
def production(data: Path) -> Iterator[int]:
    """Production (the mixed profile) serving on a loopback port, for as long as needed."""
    prod = service.Production(data)
    server = ThreadingHTTPServer(("127.0.0.1", 0), service.make_handler(prod))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        os.close(prod.fd)


def test_small_chunks_and_their_pacing(tmp_path: Path, big_file: Path) -> None:
    """--chunk 128 KiB reads in 128 KiB steps; a static limit still holds its rate."""
    got = backup_json(
        tmp_path, big_file, "--mode", "static", "--limit", "4e6", "--chunk", str(128 << 10),
        seconds=1.0,
    )  # fmt: skip
    assert got["chunk"] == 128 << 10
    assert got["bytes"] % (128 << 10) == 0
    assert 0 < got["bytes"] <= 4e6 * 1.0 + (128 << 10)


def refused(tmp_path: Path, data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """backup.py started with ``extra`` arguments, which it should refuse."""
    return subprocess.run(
        [
            sys.executable, str(HERE / "backup.py"), "--mode", "unguarded",
            "--data", str(data), "--out", str(tmp_path / "o"),
            "--timeline", str(tmp_path / "t.json"), "--start-at", "0", "--stop-at", "0",
            *extra,
        ],
        cwd=HERE, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_a_chunk_that_o_direct_cannot_read_is_refused(tmp_path: Path, big_file: Path) -> None:
    out = refused(tmp_path, big_file, "--chunk", "1000")
    assert out.returncode == 2
    assert "--chunk 1000" in out.stderr


@pytest.mark.parametrize(
    ("parts", "writes"),
    [("read", False), ("compress", False), ("write", True), ("read,write", True)],
)
def test_a_backup_keeping_part_of_its_work_does_only_that(
    tmp_path: Path, big_file: Path, parts: str, writes: bool
) -> None:
    """--parts takes the backup's work apart for the mechanism scenarios (mr, mc, mw...)."""
    got = backup_json(tmp_path, big_file, "--mode", "unguarded", "--parts", parts)
    assert got["parts"] == sorted(parts.split(","))
    assert got["bytes"] > 0  # it went through chunks
    assert (got["written"] > 0) is writes
    whole = backup_json(tmp_path, big_file, "--mode", "unguarded")
    assert whole["parts"] == ["compress", "read", "write"]
    assert whole["written"] > 0


def test_an_unknown_part_is_refused(tmp_path: Path, big_file: Path) -> None:
    out = refused(tmp_path, big_file, "--parts", "read,upload")
    assert out.returncode == 2
    assert "--parts read,upload" in out.stderr


def test_the_mechanism_scenarios_are_known_to_the_pulsed_harness() -> None:
    names = {sc["name"] for sc in run.mechanism()}
    assert names == {"mr", "mc", "mw", "mrw", "mrk"}
    assert not names & {sc["name"] for sc in run.scenarios(False)}  # not in run.py's runs


def test_the_sleeping_backup_reads_nothing(tmp_path: Path, big_file: Path) -> None:
    """z: the static schedule's wake-ups, no bytes read or written."""
    got = backup_json(tmp_path, big_file, "--mode", "sleep", "--limit", "20e6")
    assert got["bytes"] == 0
    assert got["mode"] == "sleep"
    assert not (tmp_path / "out.z").exists()


# -- production profiles --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "reads", "hashed"),
    [("mixed", 4, 64 * 1024), ("cpu", 0, 2 << 20), ("disk", 8, 0)],
)
def test_production_profiles_do_what_they_say(
    data_file: Path, monkeypatch: pytest.MonkeyPatch, profile: str, reads: int, hashed: int
) -> None:
    """cpu reads nothing from the disk and hashes 2 MiB; disk reads 8 blocks and
    hashes nothing; mixed is today's production. Counted at the system calls."""
    calls: list[int] = []
    real_preadv = os.preadv

    def preadv(fd: int, bufs: list[Any], offset: int) -> int:
        calls.append(offset)
        return real_preadv(fd, bufs, offset)

    hashed_bytes: list[int] = []
    real_sha = service.hashlib.sha256

    def sha256(data: bytes = b"") -> Any:
        hashed_bytes.append(len(data))
        return real_sha(data)

    prod = service.Production(data_file, profile)
    try:
        monkeypatch.setattr(service.os, "preadv", preadv)
        monkeypatch.setattr(service.hashlib, "sha256", sha256)
        for _ in range(5):
            body = json.loads(prod.work())
            assert body["ok"] is True
    finally:
        os.close(prod.fd)
    assert len(calls) == 5 * reads
    assert all(off % harness.BLOCK == 0 for off in calls)
    assert sum(hashed_bytes) == 5 * hashed
    assert (prod.reads, prod.hashed) == (5 * reads, 5 * hashed)


def test_an_unknown_profile_is_refused(data_file: Path) -> None:
    with pytest.raises(ValueError, match="profile='gpu'"):
        service.Production(data_file, "gpu")


# -- repeats, the frontier and the figures --------------------------------------------------


def test_repeat_interval_narrows_with_repeats() -> None:
    """The A/A interval over repeats: t-based, in logs, and how many repeats ±2 % takes."""
    few = harness.repeat_interval([0.95, 1.05, 1.0])
    many = harness.repeat_interval([0.95, 1.05, 1.0] * 10)
    assert few["mean"] == pytest.approx(1.0, abs=0.01)
    assert few["half"] > many["half"] > 0
    assert few["needed"] > 3
    assert many["needed"] > 3
    # at the repeats it asks for, the interval is within ±2 %
    n = int(few["needed"])
    sd = few["sd"]
    assert math.exp(harness.t95(n - 1) * sd / math.sqrt(n)) - 1 <= 0.02
    assert math.exp(harness.t95(n - 2) * sd / math.sqrt(n - 1)) - 1 > 0.02
    one = harness.repeat_interval([1.1])
    assert one["mean"] == pytest.approx(1.1)
    assert math.isnan(one["half"])
    assert math.isnan(harness.repeat_interval([])["mean"])


def fake_runs(repeats: int = 2, profile: str = "mixed") -> list[dict[str, Any]]:
    """A run of every scenario: inflation grows with the backup's share."""
    out = []
    shares = {"b": 1.0, "c": 0.9, "i": 0.95, "k": 0.9, "ik": 0.85, "e": 0.6, "e2": 0.7}
    for k in range(repeats):
        for sc in run.scenarios(False, profile):
            share = shares.get(sc["name"], sc.get("level") or 0.4)
            if sc["family"] in ("alone", "sleep"):
                share = 0.0
            scale = 1.0 + 0.5 * share + (0.002 * k if sc["name"] == "a2" else 0.0)
            r = fake_run(sc["name"], k, scale, 100.0 * share)
            r["profile"] = profile
            r["prod_cpu_ms"] = 0.5
            out.append(r)
    return out


def test_headline_finds_the_frontier_and_the_noise() -> None:
    scs = run.scenarios(False)
    s = run.analyse(fake_runs(3), scs)
    h = run.headline(s, scs)
    # the least inflation among backups keeping >= 30 %: the static limit at 30 %
    assert h["best_p95_share"] >= 0.30
    assert h["best_p95"] == pytest.approx(1.15, abs=0.01)
    assert h["best_p95_by"] in ("d", "dk", "dik")
    assert h["sleep_p95"] == pytest.approx(1.0)
    assert h["goal"] == "not met"
    assert h["aa_p95_half"] > 0
    assert h["aa_within_2pct"] == "yes"  # A/A ratios 1.000, 1.002, 1.004: within ±2 %
    assert h["alone_cpu_ms"] == pytest.approx(0.5)


def test_scenario_names_can_be_quoted_by_the_figures() -> None:
    """Scenario names are keys of results.json: no dots, no spaces; the stand-ins and
    the static curve are there, the cpu and disk profiles run the stand-ins."""
    names = [sc["name"] for sc in run.scenarios(False)]
    assert len(names) == len(set(names))
    assert all("." not in n and " " not in n for n in names)
    assert {"i", "k", "ik", "dk", "dik", "z", "d10", "d50", "d70", "g5", "g25", "g100"} <= set(
        names
    )
    for profile in ("cpu", "disk"):
        sub = [sc["name"] for sc in run.scenarios(False, profile)]
        assert sub == [n for n in names if n in run.PROFILE_SCENARIOS]
    idle = next(sc for sc in run.scenarios(False) if sc["name"] == "ik")
    assert "--sched-idle" in idle["backup"]
    assert str(run.SMALL) in idle["backup"]


def test_every_figure_the_pages_quote_is_written_by_a_run() -> None:
    """Each `impact/results.json` key marked in the README and the docs exists in what
    run.py writes (built here from made-up runs, not read from the committed file)."""
    from types import SimpleNamespace

    figures = load_figures()
    runs = fake_runs(2) + fake_runs(2, "cpu") + fake_runs(2, "disk")
    scs_by = {p: run.scenarios(False, p) for p in run.PROFILES}
    summaries = {
        p: run.analyse([r for r in runs if r["profile"] == p], scs_by[p]) for p in run.PROFILES
    }
    heads = {p: run.headline(summaries[p], scs_by[p]) for p in run.PROFILES}
    bench = SimpleNamespace(
        quick=False,
        repeats=2,
        measure=13.0,
        speed=80e6,
        rate=200.0,
        autogroups=True,
        io_scheduler="mq-deadline",
    )
    started = datetime(2026, 12, 1, tzinfo=timezone.utc)
    doc = run.results_json(bench, summaries, heads, runs, started, 600.0, (1.0, 2.0))
    doc = json.loads(json.dumps(doc, default=str))
    doc["history"] = run.history_summary([{"date": "d", "repeats": 3, "scenarios": {
        n: [0.5, 1.2, 1.3] for sc in scs_by["mixed"] for n in [sc["name"]]}}])  # fmt: skip
    keys = [
        m.group(2)
        for page in figures.pages()
        if page.exists()
        for m, _ in figures.figures(page)
        if m.group(1) == "impact/results.json"
    ]
    assert len(keys) >= 20
    for key in keys:
        figures.lookup(doc, key)  # KeyError / IndexError: a figure no run would write


def load_figures() -> ModuleType:
    return load_script(HERE.parent / "figures.py", "impact_figures")


def test_compare_judges_a_difference_on_the_noise() -> None:
    s = {
        "x": point("x", 0.3, 1.20, 1.50),
        "y": point("y", 0.3, 1.08, 1.49),
    }
    line = run.compare(s, "x", "y", 0.05)
    assert "p95 ×1.08 vs ×1.20 (lower, beyond the A/A interval)" in line
    assert "p99 ×1.49 vs ×1.50 (within the A/A interval)" in line
    assert "not measured" in run.compare(s, "x", "zz", 0.05)
    assert "noise unknown" in run.compare(s, "x", "y", math.nan)


def test_earlier_records_are_read_with_todays_names(tmp_path: Path) -> None:
    old = {"date": "d", "repeats": 3, "measure": 13, "outside": 0.1,
           "scenarios": {"a2": [0, 1, 1], "g0.05": [0.5, 1.2, 1.4], "g1": [0.9, 1.5, 1.6]}}  # fmt: skip
    (tmp_path / "history.jsonl").write_text(json.dumps(old) + "\n")
    saved = run.OUT
    run.OUT = tmp_path
    try:
        [h] = run.read_history()
    finally:
        run.OUT = saved
    assert set(h["scenarios"]) == {"a2", "g5", "g100"}


def test_the_backup_sets_its_autogroups_nice(tmp_path: Path, big_file: Path) -> None:
    """--autogroup-nice 19: the backup's session (its autogroup) runs at nice 19, which
    is what counts against production in another session when autogroups are on."""
    got = backup_json(tmp_path, big_file, "--mode", "nice", "--autogroup-nice", "19")
    assert got["nice"] == 19
    ours = harness.autogroup()  # ("", 0) in the root group (a container's first session)
    if got["autogroup"]:  # setsid gave the backup an autogroup of its own
        assert got["autogroup_nice"] == 19
        assert got["autogroup"] != ours[0]  # its own session, not ours
        assert harness.autogroup() == ours  # ours untouched
    else:  # only a kernel without autogroups leaves a new session without one
        assert not harness.autogroup_enabled()
        assert got["autogroup_nice"] == 0
    plain = backup_json(tmp_path, big_file, "--mode", "unguarded")
    assert plain["autogroup_nice"] == 0


def test_blackout_lines_tell_a_chunk_in_flight_and_a_verdict_hold() -> None:
    """One chunk granted before the BLACKOUT and read at its start is still a pause; a
    backup that the analyser holds at 0 after it is told apart from one that ran on."""
    mib = float(1 << 20)
    in_flight = {"scenario": "f", "repeat": 0, "timeline": [
        [0.0, 0.0, 1e6, 0, 0], [1.0, 5 * mib, 0.0, 0, 2], [1.5, 6 * mib, 0.0, 0, 2],
        [2.0, 6 * mib, 0.0, 0, 2], [3.0, 9 * mib, 1e6, 0, 0],
    ]}  # fmt: skip
    held = {"scenario": "f", "repeat": 1, "timeline": [
        [0.0, 0.0, 1e6, 0, 0], [1.0, 5 * mib, 0.0, 0, 2], [2.0, 5 * mib, 0.0, 2, 2],
        [3.0, 5 * mib, 0.0, 2, 0], [4.0, 5 * mib, 0.0, 2, 0],
    ]}  # fmt: skip
    leaked = {"scenario": "f", "repeat": 2, "timeline": [
        [0.0, 0.0, 1e6, 0, 0], [1.0, 5 * mib, 0.0, 0, 2], [1.5, 7 * mib, 0.0, 0, 2],
        [2.0, 9 * mib, 0.0, 0, 2], [3.0, 12 * mib, 1e6, 0, 0],
    ]}  # fmt: skip
    lines = run.blackout_lines([in_flight, held, leaked])
    assert "paused and resumed. (One chunk" in lines[2]
    assert "the analyser's verdict held the rate at 0" in lines[3]
    assert "**did not pause and resume**" in lines[4]


# -- the pulsed (causal) measurement ----------------------------------------------------------

pulsed = load("pulsed")


def test_pulsed_windows_pair_one_on_with_one_off_in_a_drawn_order() -> None:
    windows = pulsed.schedule(10.0, 40.0, 2.0, random.Random(3))
    assert [w[0] for w in windows] == [10.0 + 2 * i for i in range(20)]
    assert all(end - start == 2.0 for start, end, _ in windows)
    for k in range(0, 20, 2):
        assert {windows[k][2], windows[k + 1][2]} == {True, False}
    assert {windows[k][2] for k in range(0, 20, 2)} == {True, False}  # both orders drawn


def test_pulsed_harm_finds_a_slowdown_of_the_on_windows_and_none_without() -> None:
    rng = random.Random(5)
    windows = pulsed.schedule(0.0, 120.0, 2.0, rng)

    def requests(factor: float) -> list[tuple[float, float]]:
        out = []
        for start, end, on in windows:
            t = start
            while t < end:
                out.append((t, rng.expovariate(1 / 0.003) * (factor if on else 1.0)))
                t += 0.01
        return out

    slow = pulsed.harm(requests(1.2), windows, 0.5, rng, resamples=300)
    assert slow["pairs"] == 30
    assert slow["requests"]["on"] == pytest.approx(30 * 150, abs=30)  # the settle left out
    assert slow["p95"]["ratio"] == pytest.approx(1.2, rel=0.08)
    assert slow["p95"]["low"] > 1.05
    same = pulsed.harm(requests(1.0), windows, 0.5, rng, resamples=300)
    assert same["p95"]["low"] < 1.0 < same["p95"]["high"]
