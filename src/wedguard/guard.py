"""Deprecated: moved to :mod:`wedguard.runtime.guard` (import from :mod:`wedguard` or there)."""

from wedguard._moved import alias

alias(__name__)
