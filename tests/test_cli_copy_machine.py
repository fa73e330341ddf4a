"""`wedguard copy`'s resumable copy against a tiny reference model.

A hypothesis state machine writes, rewrites, re-times and deletes files in a source
tree and copies it again and again. The model remembers what each destination file
should hold: a file is copied when its size or modification time differs from the
destination's (rsync's quick check), otherwise it is left as it is. After every copy
the destination must match the model exactly (bytes, mode, mtime), the job must count
exactly the files the model expects, and no temporary file may be left behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import wedguard as wg
from wedguard.jobs import CopyJob as _CopyJob
from wedguard.testing import FakeClock

NAMES = ("a.bin", "sub/b.bin", "sub/deep/c.bin", "d.bin")
BASE_NS = 1_700_000_000_000_000_000


class ResumableCopy(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="wedguard-copy-machine-"))
        self.src = self.root / "src"
        self.dst = self.root / "dst"
        self.src.mkdir()
        self.source: dict[str, tuple[bytes, int, int]] = {}  # name -> data, mtime_ns, mode
        self.copied: dict[str, tuple[bytes, int, int]] = {}  # what dst should hold
        self.guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], clock=FakeClock())

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @rule(
        name=st.sampled_from(NAMES),
        data=st.binary(max_size=3000),
        tick=st.integers(min_value=0, max_value=5),
        mode=st.sampled_from([0o600, 0o640, 0o644, 0o755]),
    )
    def write(self, name: str, data: bytes, tick: int, mode: int) -> None:
        """Write a file; its mtime comes from a handful of values, so equal times with
        different contents happen (the quick check cannot see those: by design)."""
        path = self.src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode)
        mtime = BASE_NS + tick * 1_000_000_000 + 123
        os.utime(path, ns=(mtime, mtime))
        self.source[name] = (data, mtime, mode)

    @precondition(lambda self: bool(self.source))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.source)))
        (self.src / name).unlink()
        del self.source[name]

    @precondition(lambda self: bool(self.source))
    @rule(data=st.data(), tick=st.integers(min_value=0, max_value=5))
    def touch(self, data: st.DataObject, tick: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.source)))
        content, _old, mode = self.source[name]
        mtime = BASE_NS + tick * 1_000_000_000 + 123
        os.utime(self.src / name, ns=(mtime, mtime))
        self.source[name] = (content, mtime, mode)

    @rule()
    def copy(self) -> None:
        expected_copies = 0
        for name, (content, mtime, mode) in self.source.items():
            before = self.copied.get(name)
            if before is None or len(before[0]) != len(content) or before[1] != mtime:
                expected_copies += 1
                self.copied[name] = (content, mtime, mode)
        with self.guard.session("machine") as s:
            job = _CopyJob(s, self.guard, chunk=1024)
            for src, dst in job.plan(self.src, self.dst):
                job.copy_file(src, dst)
        assert job.failed == []
        assert job.copied == expected_copies
        assert job.skipped == len(self.source) - expected_copies
        assert job.bytes == s.report().bytes

    @invariant()
    def destination_matches_the_model(self) -> None:
        for name, (content, mtime, mode) in self.copied.items():
            st_ = (self.dst / name).stat()
            assert (self.dst / name).read_bytes() == content
            assert st_.st_mtime_ns == mtime
            assert st_.st_mode & 0o7777 == mode
        if self.dst.exists():
            assert not [p for p in self.dst.rglob("*") if ".wedguard-tmp." in p.name]


ResumableCopy.TestCase.settings = settings(max_examples=25, stateful_step_count=12, deadline=None)
test_resumable_copy_against_the_model = ResumableCopy.TestCase
