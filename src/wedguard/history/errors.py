"""The errors of the metric history: a store that is closed, locked or not a store."""

from __future__ import annotations

from wedguard.errors import WedguardError

__all__ = ["HistoryError", "StoreCorruptError", "StoreLockedError"]


class HistoryError(WedguardError):
    """The metrics store cannot be used: it is closed, unreadable, or not a store.

    Attributes:
        path: the database file (``":memory:"`` for an in-memory store).
        reason: what went wrong, in words.
        transient: True when trying again later may work (a lock held by another
            process, a full disk, an I/O error); False for a closed store or a file
            that is not a store.
    """

    def __init__(self, path: str, reason: str, *, transient: bool = False) -> None:
        self.path = path
        self.reason = reason
        self.transient = transient
        super().__init__(f"metrics store {path!r}: {reason}")


class StoreCorruptError(HistoryError):
    """The file is not a SQLite database, or not one wedguard can read."""


class StoreLockedError(HistoryError):
    """Another process holds the file locked for longer than the store's ``timeout``."""

    def __init__(self, path: str, reason: str, *, transient: bool = True) -> None:
        super().__init__(path, reason, transient=transient)
