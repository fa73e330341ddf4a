"""The decorator's drivers: a sync and an async wrapper that run calls through a
:class:`~wedguard.policy.breaker.CircuitBreaker` (``@breaker``)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from typing_extensions import ParamSpec

if TYPE_CHECKING:
    from wedguard.policy.breaker.core import CircuitBreaker

from wedguard.policy.breaker.state import CLOSED, MemoryBreakerStorage

__all__ = ["wrap_async", "wrap_sync"]

P = ParamSpec("P")
R = TypeVar("R")


def wrap_sync(self: CircuitBreaker, fn: Callable[P, R]) -> Callable[P, R]:
    """``@breaker`` on a function: the call through the breaker, its closed state read
    without a call on the hot path."""
    load = self._load
    # the default storage is read as an attribute: no call on the hot path
    mem = self._storage if type(self._storage) is MemoryBreakerStorage else None
    enter = self._enter
    exit_with = self._exit_with
    settle_success = self._settle_success
    counting = self._window is not None
    closed = CLOSED

    @functools.wraps(fn)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        record = load() if mem is None else mem._record
        if record.state is closed:
            # the hot path: one read to admit, one to see whether a reset is due
            generation = record.generation
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                exit_with(generation, False, exc)
                raise
            done = load() if mem is None else mem._record
            if done.failures or counting:
                settle_success(generation, False)
            return result
        generation, trial = enter(record)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            exit_with(generation, trial, exc)
            raise
        settle_success(generation, trial)
        return result

    return guarded


def wrap_async(self: CircuitBreaker, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """``@breaker`` on a coroutine function: as :func:`wrap_sync`, awaited."""
    load = self._load
    # the default storage is read as an attribute: no call on the hot path
    mem = self._storage if type(self._storage) is MemoryBreakerStorage else None
    enter = self._enter
    exit_with = self._exit_with
    settle_success = self._settle_success
    counting = self._window is not None
    closed = CLOSED

    @functools.wraps(fn)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        record = load() if mem is None else mem._record
        if record.state is closed:
            generation = record.generation
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                exit_with(generation, False, exc)
                raise
            done = load() if mem is None else mem._record
            if done.failures or counting:
                settle_success(generation, False)
            return result
        generation, trial = enter(record)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            exit_with(generation, trial, exc)
            raise
        settle_success(generation, trial)
        return result

    return guarded
