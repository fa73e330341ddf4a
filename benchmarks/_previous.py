"""The sources of an older commit, for benchmarks that measure it side by side.

Example::

    src = checkout("main", tmpdir)   # <tmpdir>/src, ready for PYTHONPATH
"""

from __future__ import annotations

import subprocess
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
SRC = str(TOP / "src")


def checkout(ref: str, into: str) -> str:
    """The ``src`` folder of commit ``ref``, unpacked under ``into``; returns its path."""
    archive = subprocess.run(
        ["git", "-C", str(TOP), "archive", ref, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return str(Path(into) / "src")
