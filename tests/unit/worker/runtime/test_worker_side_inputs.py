"""The runtime with a stage that reads a side input and takes messages without an output."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from streamvane_worker.config import StageType
from streamvane_worker.io.testing import FakeAttemptLog, FakeSink, FakeSource
from streamvane_worker.runtime.metrics import create_metrics
from streamvane_worker.runtime.worker import Worker
from streamvane_worker.stages.base import ItemError, StageResult
from streamvane_worker.stages.message import Message
from streamvane_worker.stages.recommendation import Engagement

from ..harness import DLQ, make_config, wait_for

INPUT = "persistent://t/n/in"
SIDE = "persistent://t/n/engagements"


class Recording:
    """Takes every message without an output; fails engagements of item ``bad``."""

    def __init__(self) -> None:
        self.seen: list[type[Message]] = []

    async def process(self, items: list[Message]) -> StageResult:
        if any(isinstance(i, Engagement) and i.item_id == "boom" for i in items):
            raise RuntimeError("a stage bug")
        self.seen.extend(type(i) for i in items)
        errors = [
            ItemError(n, "bad", "bad item")
            for n, i in enumerate(items)
            if isinstance(i, Engagement) and i.item_id == "bad"
        ]
        return StageResult(errors=errors)


def _engagement(item: str) -> dict[str, object]:
    at = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    return {"userId": "u", "itemId": item, "eventType": "like", "eventTime": at}


async def test_worker_decodes_by_topic_and_acks_messages_without_output_when_a_side_input_is_read() -> (
    None
):
    config = make_config(
        StageType.TRAINING_EXAMPLES,
        input={"topic": INPUT, "subscription": "sub", "subscriptionType": "Key_Shared"},
        params={"engagementsTopic": "engagements"},
        state={"topic": "persistent://t/n/state"},
    )
    assert config.side_inputs() == {"engagementsTopic": SIDE}
    events: list[tuple[str, ...]] = []
    source = FakeSource(events)
    dead_letter = FakeSink(DLQ, events)
    retries = {INPUT: FakeSink(INPUT, events), SIDE: FakeSink(SIDE, events)}
    stage = Recording()
    worker = Worker(
        config,
        source,
        [FakeSink(t, events) for t in config.outputs],
        dead_letter,
        retries,
        stage,
        create_metrics("p", "s"),
        _ready,
        FakeAttemptLog(),
    )
    task = asyncio.create_task(worker.run())
    ok = source.publish(_engagement("a"), topic=SIDE)
    bad = source.publish(_engagement("bad"), topic=SIDE)
    wrong = source.publish(_engagement("a"))  # an engagement on the recommendations topic
    await wait_for(lambda: len(source.acked) == 3)
    worker.stop()
    await asyncio.wait_for(task, 5)

    assert stage.seen == [Engagement, Engagement]
    assert sorted(source.acked) == sorted([ok, bad, wrong])
    reasons = [m.properties["streamvane-error"] for m in dead_letter.sent]
    assert sorted(reasons) == ["bad", "schema"]


async def test_worker_retries_a_side_input_message_on_its_own_topic_when_the_stage_fails() -> None:
    config = make_config(
        StageType.TRAINING_EXAMPLES,
        input={"topic": INPUT, "subscription": "sub", "subscriptionType": "Key_Shared"},
        params={"engagementsTopic": "engagements"},
        state={"topic": "persistent://t/n/state"},
    )
    events: list[tuple[str, ...]] = []
    source = FakeSource(events)
    retries = {INPUT: FakeSink(INPUT, events), SIDE: FakeSink(SIDE, events)}
    worker = Worker(
        config,
        source,
        [FakeSink(t, events) for t in config.outputs],
        FakeSink(DLQ, events),
        retries,
        Recording(),
        create_metrics("p", "s"),
        _ready,
        FakeAttemptLog(),
    )
    task = asyncio.create_task(worker.run())
    source.publish(_engagement("boom"), topic=SIDE)
    await wait_for(lambda: len(source.acked) == 1)
    worker.stop()
    await asyncio.wait_for(task, 5)

    assert len(retries[SIDE].sent) == 1 and not retries[INPUT].sent


async def _ready() -> bool:
    return True
