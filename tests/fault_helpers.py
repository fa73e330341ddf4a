"""Fault injection shared by the reliability tests: a full disk, read-only media.

As root a real small tmpfs is mounted (and always unmounted); elsewhere the same
faults are injected as the ``OSError`` the kernel would give.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import wedguard.sinks.spool


def _run(*argv: str) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def can_mount() -> bool:
    """True when this process may mount a tmpfs (root, and not forbidden).

    ``WEDGUARD_TEST_NO_MOUNT=1`` answers False, to run the injected faults as root.
    """
    if os.geteuid() != 0 or os.environ.get("WEDGUARD_TEST_NO_MOUNT"):
        return False
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"wedguard-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        if not _run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)):
            return False
        _run("umount", str(probe))
        return True
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "64k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path``, unmounted on the way out."""
    path.mkdir(parents=True, exist_ok=True)
    if not _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)):
        pytest.fail(f"mount tmpfs on {path} failed")
    try:
        yield path
    finally:
        if not _run("umount", str(path)):
            _run("umount", "-l", str(path))


def remount(path: Path, mode: str) -> None:
    """Remount the tmpfs on ``path`` ``ro`` or ``rw``."""
    assert _run("mount", "-o", f"remount,{mode}", str(path)), f"remount {mode} failed"


def fill(directory: Path) -> Path:
    """Fill the file system holding ``directory``; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


class SpoolFault:
    """The spool's disk calls fail with ``errno`` while :attr:`on` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, code: int = errno.ENOSPC) -> None:
        self.code = code
        self.on = False
        self.raised = 0
        real_write, real_fsync = wedguard.sinks.spool._os_write, wedguard.sinks.spool._fsync

        def write(fd: int, data: bytes | memoryview) -> int:
            self._check()
            return real_write(fd, data)

        def fsync(fd: int) -> None:
            self._check()
            real_fsync(fd)

        monkeypatch.setattr(wedguard.sinks.spool, "_os_write", write)
        monkeypatch.setattr(wedguard.sinks.spool, "_fsync", fsync)

    def _check(self) -> None:
        if self.on:
            self.raised += 1
            raise OSError(self.code, os.strerror(self.code))


class FullDisk:
    """A directory whose file system can be filled and freed: a real 64 KiB tmpfs
    as root, else the ENOSPC injected into the spool's writes."""

    def __init__(self, directory: Path, fault: SpoolFault | None) -> None:
        self.dir = directory
        self._fault = fault
        self._filler: Path | None = None

    @property
    def real(self) -> bool:
        return self._fault is None

    @property
    def full(self) -> bool:
        return self._filler is not None or (self._fault is not None and self._fault.on)

    def fill(self) -> None:
        if self._fault is not None:
            self._fault.on = True
        else:
            self._filler = fill(self.dir)

    def free(self) -> None:
        if self._fault is not None:
            self._fault.on = False
        elif self._filler is not None:
            self._filler.unlink()
            self._filler = None


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FullDisk]:
    if can_mount():
        with tmpfs(tmp_path / "disk") as mounted:
            yield FullDisk(mounted, None)
    else:
        yield FullDisk(tmp_path, SpoolFault(monkeypatch, errno.ENOSPC))
