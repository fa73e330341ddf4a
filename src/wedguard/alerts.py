"""Deprecated: moved to :mod:`wedguard.runtime.alerts` (import from :mod:`wedguard` or there)."""

from wedguard._moved import alias

alias(__name__)
