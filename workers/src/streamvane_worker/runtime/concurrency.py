"""Adaptive concurrency: how many batches may be in the stage (calling the model) at once, by
AIMD.

The limit starts at ``maxInFlightBatches``. Each batch the model answered in time adds
``1 / limit`` (about one more slot per round of batches); an overload (deadline passed, queue
full) halves it, down to ``minimum``. A slow or saturated backend so gets fewer concurrent
requests instead of a queue of requests that time out and are retried into the same queue;
batches retrying after an overload wait for a slot like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class AdaptiveLimit:
    def __init__(self, maximum: int, minimum: int = 1) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.limit = float(maximum)
        self.in_use = 0
        self._freed = asyncio.Event()

    async def acquire(self) -> None:
        while self.in_use >= int(self.limit):
            self._freed.clear()
            await self._freed.wait()
        self.in_use += 1

    def release(self) -> None:
        self.in_use -= 1
        self._freed.set()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def succeeded(self) -> None:
        """Additive increase: one more slot after about ``limit`` successful batches."""
        self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
        self._freed.set()

    def overloaded(self) -> None:
        """Multiplicative decrease."""
        self.limit = max(float(self.minimum), self.limit / 2)
