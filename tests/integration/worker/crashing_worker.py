"""A worker process whose passthrough stage kills its own process (SIGKILL) on any item whose
id starts with ``crash-``: the stage the crash-loop tests run. Test-only: it is registered here,
in the process this script starts, never in the worker package."""

from __future__ import annotations

import os
import signal

from streamvane_worker.__main__ import main
from streamvane_worker.config import StageType
from streamvane_worker.stages import REGISTRY, passthrough
from streamvane_worker.stages.base import Stage, StageContext, StageResult
from streamvane_worker.stages.item import ContentItem

CRASH_PREFIX = "crash-"


class Crashing:
    def __init__(self, inner: Stage) -> None:
        self._inner = inner

    async def process(self, items: list[ContentItem]) -> StageResult:
        if any(item.id.startswith(CRASH_PREFIX) for item in items):
            os.kill(os.getpid(), signal.SIGKILL)
        return await self._inner.process(items)


async def create(ctx: StageContext) -> Stage:
    return Crashing(await passthrough.create(ctx))


if __name__ == "__main__":
    REGISTRY[StageType.PASSTHROUGH] = create
    main()
