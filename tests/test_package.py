"""The package's metadata and public surface are what users install and import."""

from __future__ import annotations

import importlib.metadata
import pathlib
import subprocess
import sys

import pytest

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


def test_import_loads_nothing_heavy() -> None:
    """`import wedguard` loads none of sqlite3, subprocess, psutil, asyncio or an extra
    until a name that needs them is used (the package's names are imported lazily)."""
    heavy = ("sqlite3", "subprocess", "psutil", "asyncio", "threading", "ssl", "email",
             "matplotlib", "redis", "psycopg", "wedguard.runtime.guard")  # fmt: skip
    code = (
        "import sys, wedguard; wedguard.parse_rate('10MB/s'); wedguard.ConfigError;"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    used = subprocess.run(
        [sys.executable, "-c", "import sys, wedguard; wedguard.Guard; print('wedguard.runtime.guard' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert used.stdout.strip() == "True"


def test_every_public_name_is_listed_and_lazy() -> None:
    """The lazy table and __all__ name the same things; an unknown name is an
    AttributeError, as for any module."""
    assert set(wg._WHERE) | {"__version__"} == set(wg.__all__)
    assert "Guard" in dir(wg)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        wg.Nope  # noqa: B018
