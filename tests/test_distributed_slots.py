"""RedisSlots against a real redis-server: limits, leases, FIFO and the fallback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from conftest_redis import RedisServer, key, own_redis_server, redis_server
from wedguard import ConfigError, ThrottleTimeout
from wedguard.testing import RecordingSink

pytest.importorskip("redis")

from wedguard.distributed import RedisLink, RedisSlots, SlotTimeout

__all__ = ["key", "own_redis_server", "redis_server"]  # fixtures used below

SRC = str(Path(__file__).resolve().parent.parent / "src")


@pytest.fixture
def client(redis_server: RedisServer) -> Any:
    c = redis_server.client()
    yield c
    c.close()


def wait_until(predicate: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def test_at_most_limit_holders(redis_server: RedisServer, key: str) -> None:
    a = RedisSlots(redis_server.client(), key, 2)
    b = RedisSlots(redis_server.client(), key, 2)
    assert a.try_acquire()
    assert b.try_acquire()
    assert not a.try_acquire()
    assert not b.try_acquire()
    assert a.in_use == 2
    a.release()
    assert b.try_acquire()
    assert (a.held, b.held) == (0, 2)
    b.close()
    assert a.in_use == 0


def test_context_manager_and_hold(client: Any, key: str) -> None:
    slots = RedisSlots(client, key, 1)
    with slots:
        assert slots.held == 1
        assert not slots.try_acquire()
    assert slots.held == 0
    with slots.hold(timeout=1):
        assert slots.in_use == 1
    assert slots.in_use == 0


def test_release_without_a_slot(client: Any, key: str) -> None:
    slots = RedisSlots(client, key, 1)
    with pytest.raises(RuntimeError, match="without a held slot"):
        slots.release()


def test_acquire_times_out_and_leaves_the_queue(client: Any, key: str) -> None:
    holder = RedisSlots(client, key, 1)
    waiter = RedisSlots(client, key, 1, poll=0.01)
    assert holder.try_acquire()
    t0 = time.monotonic()
    with pytest.raises(SlotTimeout) as info:
        waiter.acquire(timeout=0.1)
    assert time.monotonic() - t0 < 1.0
    assert isinstance(info.value, ThrottleTimeout)
    assert info.value.key == key
    assert info.value.limit == 1
    assert key in str(info.value)
    assert waiter.waiting == 0  # gave up its place
    holder.release()
    assert waiter.try_acquire()  # nobody is queued ahead


def test_waiters_are_served_in_fifo_order(redis_server: RedisServer, key: str) -> None:
    holder = RedisSlots(redis_server.client(), key, 1)
    assert holder.try_acquire()
    order: list[str] = []
    sharers = {name: RedisSlots(redis_server.client(), key, 1, poll=0.01) for name in "ABC"}

    def run(name: str) -> None:
        with sharers[name]:
            order.append(name)
            time.sleep(0.02)

    threads = []
    for expected_queue, name in enumerate("ABC", start=1):
        thread = threading.Thread(target=run, args=(name,), daemon=True)
        thread.start()
        threads.append(thread)
        assert wait_until(lambda n=expected_queue: holder.waiting == n)  # type: ignore[misc]
    assert not holder.try_acquire()  # try_acquire does not jump the queue
    holder.release()
    for thread in threads:
        thread.join(5)
    assert order == ["A", "B", "C"]


def test_a_live_holder_keeps_its_slot_by_renewing(redis_server: RedisServer, key: str) -> None:
    holder = RedisSlots(redis_server.client(), key, 1, lease=0.45)
    other = RedisSlots(redis_server.client(), key, 1, lease=0.45)
    assert holder.try_acquire()
    for _ in range(4):  # 1 s: well past the lease, renewed every 0.15 s
        time.sleep(0.25)
        assert not other.try_acquire()
    holder.release()
    assert other.try_acquire()
    other.close()


HOLD = """
import sys, time
sys.path.insert(0, {src!r})
import redis
from wedguard.distributed import RedisSlots
slots = RedisSlots(redis.Redis(port={port}), {key!r}, 1, lease=0.5)
assert slots.try_acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_dead_holder_frees_its_slot_when_its_lease_ends(
    redis_server: RedisServer, key: str
) -> None:
    code = HOLD.format(src=SRC, port=redis_server.port, key=key)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        slots = RedisSlots(redis_server.client(), key, 1)
        time.sleep(0.6)
        assert not slots.try_acquire()  # alive and renewing
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        killed = time.monotonic()
        assert wait_until(slots.try_acquire, timeout=2.0)
        assert time.monotonic() - killed <= 1.0  # the 0.5 s lease, not the default 30 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_dead_waiter_loses_its_place(client: Any, key: str) -> None:
    holder = RedisSlots(client, key, 1)
    ghost = RedisSlots(client, key, 1, poll=0.01)  # queues once, then never asks again
    assert holder.try_acquire()
    assert ghost._run("acquire", "ghost-token") is not None
    assert holder.waiting == 1
    holder.release()
    assert not holder.try_acquire()  # the ghost is first in line...
    assert wait_until(holder.try_acquire, timeout=2.5)  # ...until its place runs out


async def test_async_with(client: Any, key: str) -> None:
    slots = RedisSlots(client, key, 1, poll=0.01)
    async with slots:
        assert slots.held == 1
        with pytest.raises(SlotTimeout):
            await slots.acquire_async(timeout=0.05)
    assert slots.held == 0
    assert slots.waiting == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"key": ""}, "key"),
        ({"limit": 0}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"limit": True}, "limit"),
        ({"lease": 0}, "lease"),
        ({"lease": float("inf")}, "lease"),
        ({"poll": 0}, "poll"),
        ({"fallback_limit": -1}, "fallback_limit"),
    ],
)
def test_bad_input_names_the_field(client: Any, kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"client": client, "key": "k", "limit": 2}
    args.update(kwargs)
    with pytest.raises(ConfigError) as info:
        RedisSlots(**args)
    assert info.value.field == field
    slots = RedisSlots(client, "k", 1)
    with pytest.raises(ConfigError, match="timeout"):
        slots.acquire(timeout=-1)


class SlotsModel(RuleBasedStateMachine):
    """Three sharers take and free slots; Redis agrees with a plain counter."""

    server: RedisServer
    counter = 0

    @initialize(limit=st.integers(1, 3))
    def start(self, limit: int) -> None:
        type(self).counter += 1
        self.client = self.server.client()
        name = f"slots-model:{type(self).counter}"
        self.limit = limit
        self.sharers = [RedisSlots(self.client, name, limit) for _ in range(3)]
        self.held = [0, 0, 0]

    @rule(i=st.integers(0, 2))
    def try_acquire(self, i: int) -> None:
        expected = sum(self.held) < self.limit
        assert self.sharers[i].try_acquire() == expected
        self.held[i] += expected

    @precondition(lambda self: sum(getattr(self, "held", [])) > 0)
    @rule(i=st.integers(0, 2))
    def release(self, i: int) -> None:
        if self.held[i]:
            self.sharers[i].release()
            self.held[i] -= 1

    @invariant()
    def counts_agree(self) -> None:
        if hasattr(self, "sharers"):
            assert self.sharers[0].in_use == sum(self.held) <= self.limit
            assert [s.held for s in self.sharers] == self.held

    def teardown(self) -> None:
        if hasattr(self, "sharers"):
            for s in self.sharers:
                s.close()
            self.client.close()


def test_agrees_with_a_counter(redis_server: RedisServer) -> None:
    SlotsModel.server = redis_server
    run = SlotsModel.TestCase
    run.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
    run().runTest()


# -- faults -----------------------------------------------------------------------------


def test_fallback_slots_while_redis_is_down_and_leases_come_back(
    own_redis_server: RedisServer,
) -> None:
    sink = RecordingSink()
    link = RedisLink(own_redis_server.url, probe_interval=0.1, sinks=[sink])
    slots = RedisSlots(link, "running", 2, lease=0.3, fallback_limit=1)
    assert slots.try_acquire()  # in Redis
    own_redis_server.stop()
    t0 = time.monotonic()
    assert slots.try_acquire()  # the one local fallback slot
    assert time.monotonic() - t0 < 1.0
    assert slots.in_use == 1  # offline: this host's local slots only
    assert not slots.try_acquire()
    with pytest.raises(SlotTimeout):
        slots.acquire(timeout=0.1)
    assert not slots.online
    slots.release()  # never raises while Redis is down
    assert slots.held == 1
    assert slots.in_use == 0  # the local slot is free again
    assert len(sink.of_kind("alert")) == 1

    own_redis_server.start()  # empty: the lease is gone with the old server
    assert wait_until(lambda: slots.in_use == 1)  # the holder re-asserts its lease
    assert slots.online
    slots.release()
    assert slots.in_use == 0
    assert len(sink.of_kind("alert")) == 2


def test_zero_fallback_slots_wait_for_redis() -> None:
    link = RedisLink("redis://127.0.0.1:1/0", timeout=0.1)
    slots = RedisSlots(link, "k", 3, fallback_limit=0)
    assert not slots.try_acquire()
    assert slots.in_use == 0
    assert "offline" in repr(slots)
