"""A worker process whose passthrough stage misbehaves on marker items: it kills its own process
(SIGKILL) on an item whose id starts with ``crash-`` and raises on one whose id starts with
``fail-``. The stage the crash-loop and retry tests run. Test-only: it is registered here, in
the process this script starts, never in the worker package."""

from __future__ import annotations

import dataclasses
import os
import signal

from streamvane_worker.__main__ import main
from streamvane_worker.config import StageType
from streamvane_worker.stages import REGISTRY, passthrough
from streamvane_worker.stages.base import Stage, StageContext, StageResult
from streamvane_worker.stages.item import ContentItem

CRASH_PREFIX = "crash-"
FAIL_PREFIX = "fail-"


class Faulty:
    def __init__(self, inner: Stage[ContentItem]) -> None:
        self._inner = inner

    async def process(self, items: list[ContentItem]) -> StageResult:
        if any(item.id.startswith(CRASH_PREFIX) for item in items):
            os.kill(os.getpid(), signal.SIGKILL)
        if any(item.id.startswith(FAIL_PREFIX) for item in items):
            raise ValueError("stage bug on a marker item")
        return await self._inner.process(items)


async def create(ctx: StageContext) -> Stage[ContentItem]:
    return Faulty(await passthrough.create(ctx))


if __name__ == "__main__":
    REGISTRY[StageType.PASSTHROUGH] = dataclasses.replace(passthrough.KIND, create=create)
    main()
