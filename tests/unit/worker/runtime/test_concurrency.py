from __future__ import annotations

import asyncio

import pytest

from streamvane_worker.runtime.concurrency import AdaptiveLimit


async def test_adaptive_limit_halves_down_to_the_minimum_when_overloaded_repeatedly() -> None:
    limit = AdaptiveLimit(8)
    for expected in (4.0, 2.0, 1.0, 1.0):
        limit.overloaded()
        assert limit.limit == expected


async def test_adaptive_limit_grows_about_one_slot_per_round_when_batches_succeed() -> None:
    limit = AdaptiveLimit(8)
    limit.overloaded()
    limit.overloaded()  # 2
    for _ in range(2):
        limit.succeeded()
    assert limit.limit == pytest.approx(2 + 1 / 2 + 1 / 2.5)
    for _ in range(100):
        limit.succeeded()
    assert limit.limit == 8


async def test_adaptive_limit_blocks_acquire_until_a_slot_is_released_when_full() -> None:
    limit = AdaptiveLimit(2)
    await limit.acquire()
    await limit.acquire()
    waiting = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    limit.release()
    await asyncio.wait_for(waiting, 1)
    assert limit.in_use == 2


async def test_adaptive_limit_admits_fewer_batches_when_the_limit_shrank() -> None:
    limit = AdaptiveLimit(4)
    for _ in range(2):
        await limit.acquire()
    limit.overloaded()  # 2 in use, limit 2
    waiting = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    limit.release()
    await asyncio.wait_for(waiting, 1)
