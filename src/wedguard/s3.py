"""Deprecated: moved to :mod:`wedguard.io.s3` (import from :mod:`wedguard` or there)."""

from wedguard._moved import alias

alias(__name__)
