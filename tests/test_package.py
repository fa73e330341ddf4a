"""The package's metadata and public surface are what users install and import."""

from __future__ import annotations

import importlib.metadata
import pathlib
import subprocess
import sys

import wedguard as wg


def test_version_comes_from_metadata() -> None:
    assert wg.__version__ == importlib.metadata.version("wedguard")


def test_metadata() -> None:
    meta = importlib.metadata.metadata("wedguard")
    assert meta["Requires-Python"] == ">=3.10"
    requires = importlib.metadata.requires("wedguard") or []
    core = {
        r.split(";")[0].split(">")[0].split("=")[0].strip(): r.partition(";")[2].strip()
        for r in requires
        if "extra ==" not in r
    }
    # exactly psutil, attrs and typing-extensions; the rest only where a platform needs it
    assert sorted(core) == ["attrs", "psutil", "tomli", "typing-extensions", "tzdata"]
    assert core["attrs"] == core["psutil"] == core["typing-extensions"] == ""
    assert core["tzdata"].replace('"', "'") == "sys_platform == 'win32'"
    assert core["tomli"].replace('"', "'") == "python_version < '3.11'"
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"redis", "prometheus", "otel", "plot"} <= extras


def test_py_typed_is_shipped() -> None:
    assert (pathlib.Path(wg.__file__).parent / "py.typed").exists()


def test_all_names_resolve() -> None:
    for name in wg.__all__:
        assert hasattr(wg, name), name
    assert sorted(wg.__all__) == list(wg.__all__)


def test_errors_share_one_base() -> None:
    for error in (wg.ConfigError, wg.ThrottleTimeout, wg.CircuitOpenError, wg.EmergencyStop):
        assert issubclass(error, wg.WedguardError)


def test_import_needs_only_core_dependencies() -> None:
    """`import wedguard` must not pull in an optional extra."""
    code = (
        "import sys, wedguard, wedguard.testing;"
        "bad = [m for m in ('redis', 'prometheus_client', 'opentelemetry', 'matplotlib', 'aiosmtpd')"
        " if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
