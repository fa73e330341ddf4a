"""Sources against the real system (psutil, /proc) and against fake cgroup/PSI files."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest

from wedguard import ConfigError, Source
from wedguard.sources import CallableProbe, PressureSource, ProcessSource, SystemSource
from wedguard.sources._util import counter_delta, own_cgroup
from wedguard.testing import FakeClock


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


# ------------------------------------------------------------------- counters


def test_counter_delta_handles_wrap_and_reset() -> None:
    assert counter_delta(100, 250) == 150
    assert counter_delta(2**32 - 10, 5) == 15  # a 32-bit counter wrapped
    assert counter_delta(10**12, 500) == 500  # a 64-bit counter reset: count since
    assert counter_delta(2**31 - 5, 3) == 3  # implausible wrap: a reset


# --------------------------------------------------------------------- system


def test_system_source_reads_the_real_machine() -> None:
    src = SystemSource()
    assert isinstance(src, Source)
    burn(0.15)
    s = src.sample()
    for key in (
        "cpu.percent",
        "mem.used_bytes",
        "mem.percent",
        "disk.read_bytes_per_s",
        "disk.write_bytes_per_s",
        "net.sent_bytes_per_s",
        "net.recv_bytes_per_s",
    ):
        assert key in s, key
        assert s[key] >= 0, key
    # psutil's first cpu_percent() is a meaningless 0.0; we measured since construction
    assert 0.0 < s["cpu.percent"] <= 100.0
    assert 0.0 < s["mem.percent"] <= 100.0
    assert not any(k.endswith(".error") for k in s)


def test_system_source_too_soon_repeats_rates_instead_of_zero() -> None:
    clock = FakeClock()
    src = SystemSource(monotonic=clock.monotonic)
    clock.advance(1.0)
    burn(0.1)
    first = src.sample()
    again = src.sample()  # no time passed: no new rate can be computed
    assert again["cpu.percent"] == first["cpu.percent"]
    assert again["net.sent_bytes_per_s"] == first["net.sent_bytes_per_s"]


def _fake_cgroup(path: pathlib.Path, usage_us: int, current: int) -> None:
    path.mkdir(exist_ok=True)
    (path / "cpu.max").write_text("50000 100000\n")  # half a core
    (path / "cpu.stat").write_text(f"usage_usec {usage_us}\nuser_usec 0\nsystem_usec 0\n")
    (path / "memory.max").write_text("1000000000\n")
    (path / "memory.current").write_text(f"{current}\n")


def test_system_source_reports_against_the_cgroup_quota(tmp_path: pathlib.Path) -> None:
    cg = tmp_path / "cg"
    _fake_cgroup(cg, usage_us=1_000_000, current=250_000_000)
    clock = FakeClock()
    src = SystemSource(cgroup=cg, monotonic=clock.monotonic, disks=False, network=False)
    assert src.cgroup == str(cg)
    clock.advance(2.0)
    _fake_cgroup(cg, usage_us=1_500_000, current=400_000_000)  # 0.5 s of CPU in 2 s
    s = src.sample()
    assert s["cpu.percent"] == pytest.approx(50.0)  # of the half-core quota, not the host
    assert s["cpu.quota_cores"] == 0.5
    assert s["mem.used_bytes"] == 400_000_000
    assert s["mem.percent"] == pytest.approx(40.0)
    assert "disk.busy_percent" not in s


def test_system_source_bad_cgroup_is_a_config_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError) as info:
        SystemSource(cgroup=tmp_path / "nope")
    assert info.value.field == "cgroup"


# -------------------------------------------------------------------- process


def test_process_source_counts_children() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.5: pass"]
    )
    try:
        time.sleep(0.05)
        with_children = ProcessSource(include_children=True)
        alone = ProcessSource(include_children=False)
        time.sleep(0.4)
        s = with_children.sample()
        a = alone.sample()
        assert s["backup.cpu.percent"] > 5.0  # the busy child: ~1 of the cores
        assert a["backup.cpu.percent"] < s["backup.cpu.percent"]
        assert s["backup.rss_bytes"] > a["backup.rss_bytes"] > 0
    finally:
        child.kill()
        child.wait()


def test_process_source_own_cpu() -> None:
    src = ProcessSource()
    burn(0.2)
    s = src.sample()
    assert 5.0 < s["backup.cpu.percent"] <= 100.0


def test_process_source_gone_is_an_error() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    s = ProcessSource(pid=child.pid).sample()
    assert s == {"backup.cpu.percent.error": 1.0, "backup.rss_bytes.error": 1.0}


@pytest.mark.parametrize("pid", [0, -1, "1", True])
def test_process_source_bad_pid(pid: object) -> None:
    with pytest.raises(ConfigError) as info:
        ProcessSource(pid=pid)  # type: ignore[arg-type]
    assert info.value.field == "pid"


# ------------------------------------------------------------- callable probe


def test_callable_probe_times_the_callable() -> None:
    s = CallableProbe(lambda: time.sleep(0.05), timeout=2).sample()
    assert 0.04 < s["db.latency_s"] < 2


def test_callable_probe_failure_is_an_error_metric() -> None:
    def boom() -> None:
        raise RuntimeError("db down")

    assert CallableProbe(boom, name="db.latency_s").sample() == {"db.latency_s.error": 1.0}


def test_callable_probe_hanging_does_not_block_past_timeout() -> None:
    release = threading.Event()
    calls = []

    def hang() -> None:
        calls.append(1)
        release.wait(10)

    probe = CallableProbe(hang, timeout=0.2)
    try:
        t0 = time.monotonic()
        assert probe.sample() == {"db.latency_s.error": 1.0}
        assert time.monotonic() - t0 < 2.0  # bounded by the timeout, not the hang
        # while it still hangs, later samples fail at once without piling up threads
        assert probe.sample() == {"db.latency_s.error": 1.0}
        assert calls == [1]
    finally:
        release.set()
    time.sleep(0.05)
    assert "db.latency_s" in probe.sample()  # recovered once the call returned
    assert calls == [1, 1]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fn": 3}, "fn"),
        ({"name": ""}, "name"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "1s"}, "timeout"),
    ],
)
def test_callable_probe_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"fn": lambda: None, **kwargs}
    with pytest.raises(ConfigError) as info:
        CallableProbe(**args)  # type: ignore[arg-type]
    assert info.value.field == field


# ------------------------------------------------------------------- pressure


def _psi(path: pathlib.Path, some: float, total_us: int, full: bool = True) -> None:
    text = f"some avg10={some:.2f} avg60=0.00 avg300=0.00 total={total_us}\n"
    if full:
        text += f"full avg10={some / 2:.2f} avg60=0.00 avg300=0.00 total={total_us // 2}\n"
    path.write_text(text)


def test_pressure_from_fake_files(tmp_path: pathlib.Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    cg = tmp_path / "cgroup" / "system.slice" / "db.service"
    cg.mkdir(parents=True)
    for res in ("cpu", "io", "memory"):
        _psi(proc / res, 1.5, 1_000_000)
        _psi(cg / f"{res}.pressure", 3.0, 2_000_000)
    clock = FakeClock()
    src = PressureSource(
        "system.slice/db.service",
        proc_root=proc,
        cgroup_root=tmp_path / "cgroup",
        monotonic=clock.monotonic,
    )
    first = src.sample()
    assert first["pressure.cpu.some_avg10"] == 1.5
    assert first["pressure.io.full_avg10"] == 0.75
    assert first["pressure.cgroup.cpu.some_avg10"] == 3.0
    assert "pressure.cgroup.cpu.some_percent" not in first  # needs two readings
    clock.advance(2.0)
    _psi(cg / "cpu.pressure", 40.0, 2_000_000 + 500_000)  # 0.5 s stalled in 2 s
    s = src.sample()
    assert s["pressure.cgroup.cpu.some_percent"] == pytest.approx(25.0)
    assert s["pressure.cgroup.cpu.full_percent"] == pytest.approx(12.5)
    assert s["pressure.cpu.some_percent"] == 0.0  # unchanged total: no stall, measured
    assert src.available == {
        "pressure.cpu": True,
        "pressure.io": True,
        "pressure.memory": True,
        "pressure.cgroup.cpu": True,
        "pressure.cgroup.io": True,
        "pressure.cgroup.memory": True,
    }


def test_pressure_unavailable_is_never_zero(tmp_path: pathlib.Path) -> None:
    src = PressureSource("no/such/cgroup", proc_root=tmp_path / "none", cgroup_root=tmp_path)
    s = src.sample()
    assert not any(v == 0.0 for v in s.values())
    assert s["pressure.cpu.some_avg10.error"] == 1.0
    assert s["pressure.cgroup.io.some_avg10.error"] == 1.0
    assert "pressure.cpu.some_avg10" not in s
    assert not any(src.available.values())


def test_pressure_on_the_real_system() -> None:
    src = PressureSource()
    s = src.sample()
    if os.path.exists("/proc/pressure/cpu") and os.access("/proc/pressure/cpu", os.R_OK):
        assert src.available["pressure.cpu"] is True
        assert 0.0 <= s["pressure.cpu.some_avg10"] <= 100.0
        time.sleep(0.05)
        assert 0.0 <= src.sample()["pressure.cpu.some_percent"] <= 100.0
    else:
        assert src.available["pressure.cpu"] is False
        assert s["pressure.cpu.some_avg10.error"] == 1.0
        assert "pressure.cpu.some_avg10" not in s


def test_own_cgroup_reads_the_unified_line(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "cgroup"
    f.write_text("12:cpu,cpuacct:/old\n0::/system.slice/db.service\n")
    assert own_cgroup(str(f)) == "/system.slice/db.service"
    f.write_text("12:cpu,cpuacct:/old\n")
    assert own_cgroup(str(f)) is None
    assert own_cgroup(str(tmp_path / "missing")) is None


def test_pressure_own_cgroup_never_raises() -> None:
    s = PressureSource("self", system=False).sample()
    assert any(k.startswith("pressure.cgroup.cpu.some_avg10") for k in s)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"resources": ("cpu", "gpu")}, "resources"),
        ({"resources": "cpu"}, "resources"),
        ({"system": False}, "system"),
    ],
)
def test_pressure_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        PressureSource(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_sources_package_imports_on_its_own() -> None:
    code = "import wedguard.sources as s, sys; print(sorted(s.__all__)); print('prometheus_client' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    lines = out.stdout.splitlines()
    assert lines[0] == str(
        [
            "CallableProbe",
            "HttpProbe",
            "PostgresSource",
            "PressureSource",
            "ProcessSource",
            "ServiceLatencySource",
            "SystemSource",
        ]
    )
    assert lines[1] == "False"


def test_system_source_detects_its_own_cgroup_v2_limits(tmp_path: pathlib.Path) -> None:
    own = None
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                own = line[3:].strip().lstrip("/")
    assert own is not None  # every Linux with cgroups lists the unified hierarchy
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")  # a cgroup v2 mount
    (tmp_path / own).mkdir(parents=True, exist_ok=True)
    _fake_cgroup(tmp_path / own, usage_us=0, current=100)
    src = SystemSource(cgroup_root=tmp_path)
    assert src.cgroup == str(tmp_path / own)
    # without limits, or without a v2 mount, the host's figures are used
    assert SystemSource(cgroup_root=tmp_path / "elsewhere").cgroup is None
    assert SystemSource(cgroup=False).cgroup is None
