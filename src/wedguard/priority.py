"""Deprecated: moved to :mod:`wedguard.io.priority` (import from :mod:`wedguard` or there)."""

from wedguard._moved import alias

alias(__name__)
