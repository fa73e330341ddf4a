"""Deprecated: moved to :mod:`wedguard.policy.bucket` (import from :mod:`wedguard` or there)."""

from wedguard._moved import alias

alias(__name__)
