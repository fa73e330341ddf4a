"""Deprecated: moved to :mod:`wedguard.runtime.priority` (import from :mod:`wedguard` or there)."""

from wedguard._moved import alias

alias(__name__)
