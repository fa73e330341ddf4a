"""Module paths of the first layout, kept for one release as deprecated aliases.

Each old module (``wedguard.guard``, ``wedguard.process``, ...) is a two-line file that
calls :func:`alias`: importing it warns with :class:`DeprecationWarning` and hands back
the module at its new place, so every name (and every monkeypatch) reaches the same
object.

>>> MOVED["wedguard.guard"]
'wedguard.runtime.guard'
"""

from __future__ import annotations

import importlib
import sys
import warnings

__all__ = ["MOVED", "alias"]

MOVED: dict[str, str] = {
    "wedguard.policy.throttle": "wedguard.policy.bucket",
    "wedguard.policy.control": "wedguard.policy.controllers",
    "wedguard.protocols": "wedguard.interfaces",
    "wedguard.guard": "wedguard.runtime.guard",
    "wedguard.session": "wedguard.runtime.session",
    "wedguard.priority": "wedguard.io.priority",
    "wedguard.alerts": "wedguard.runtime.alerts",
    "wedguard.control": "wedguard.runtime.control_socket",
    "wedguard.spool": "wedguard.sinks.spool",
    "wedguard.copy": "wedguard.io.copy",
    "wedguard.fileobj": "wedguard.io.fileobj",
    "wedguard.process": "wedguard.io.process",
    "wedguard.stream": "wedguard.io.stream",
    "wedguard.s3": "wedguard.io.s3",
}
"""Old module path -> the module that holds its code now."""


def alias(old: str) -> None:
    """Warn that ``old`` moved, and make ``import old`` give the module at its new place."""
    new = MOVED[old]
    warnings.warn(
        f"{old} moved to {new}; import from wedguard or {new}",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
