"""passthrough: forwards items unchanged apart from the provenance record (no model)."""

from __future__ import annotations

from streamvane_worker.stages.base import Stage, StageContext, StageKind, StageResult, Stopwatch
from streamvane_worker.stages.item import ContentItem


class Passthrough:
    def __init__(self, ctx: StageContext) -> None:
        self._ctx = ctx

    async def process(self, items: list[ContentItem]) -> StageResult:
        record = Stopwatch(self._ctx, len(items)).record(None)
        return StageResult(
            outputs={
                i: item.model_copy(update={"stages": [*item.stages, record]})
                for i, item in enumerate(items)
            }
        )


async def create(ctx: StageContext) -> Stage[ContentItem]:
    return Passthrough(ctx)


KIND = StageKind(create, ContentItem, ContentItem)
