from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from streamvane_worker.config import WorkerConfig
from streamvane_worker.io.errors import PulsarUnavailable
from streamvane_worker.io.sequence import NON_PARTITIONED, Position, sequence_id
from streamvane_worker.io.testing import FakeAttemptLog

from ..harness import item, make_config, start

FAILOVER = {"topic": "persistent://t/n/in", "subscription": "sub", "subscriptionType": "Failover"}


def effectively_once(**sections: dict[str, object]) -> WorkerConfig:
    return make_config(input=FAILOVER, delivery={"guarantee": "EffectivelyOnce"}, **sections)


async def test_worker_sends_each_output_with_the_sequence_id_of_its_input_when_effectively_once() -> (
    None
):
    h = await start(effectively_once())
    for i in range(5):
        h.source.publish(item(i))
    await h.wait_settled(5)
    await h.stop()
    sent = h.sinks[0].sent
    expected = [sequence_id(Position(NON_PARTITIONED, 1, i, -1)) for i in range(5)]
    assert [o.sequence_id for o in sent] == expected
    assert {o.partition for o in sent} == {NON_PARTITIONED}


async def test_worker_sends_no_sequence_id_when_at_least_once() -> None:
    h = await start()
    h.source.publish(item(1))
    await h.wait_settled(1)
    await h.stop()
    assert h.sinks[0].sent[0].sequence_id is None


async def test_worker_keeps_input_order_when_effectively_once_and_a_worker_died_holding_one() -> (
    None
):
    attempts = FakeAttemptLog()
    attempts.crashed("m1", 1)
    h = await start(
        effectively_once(batching={"maxBatchSize": 3, "maxDelayMs": 100}), attempts=attempts
    )
    ids = [h.source.publish(item(i)) for i in range(3)]
    await h.wait_settled(3)
    await h.stop()
    assert sorted(h.source.acked) == sorted(ids)
    # At-least-once handles the suspect after the rest (item-0, item-2, item-1).
    assert [o["id"] for o in h.sinks[0].items()] == ["item-0", "item-1", "item-2"]
    ids_sent = [o.sequence_id or 0 for o in h.sinks[0].sent]
    assert ids_sent == sorted(ids_sent)
    assert h.attempts.open == {}


async def test_worker_stops_without_writing_later_outputs_when_effectively_once_and_a_send_fails() -> (
    None
):
    batching = {"maxBatchSize": 1, "maxDelayMs": 1, "maxInFlightBatches": 1}
    h = await start(effectively_once(batching=batching))
    h.sinks[0].fail_with = [PulsarUnavailable("producer queue full")]
    h.source.publish(item(1))
    h.source.publish(item(2))
    await asyncio.wait_for(h.task, 5)  # it stops by itself: the next run replays from item-1
    assert h.sinks[0].sent == []
    assert h.source.acked == [] and h.source.nacked == []
    assert h.metric("retries_total", reason="publish-failed") == 0


@pytest.mark.parametrize("subscription_type", ["Shared", "Key_Shared"])
def test_worker_config_refuses_effectively_once_when_the_subscription_is_not_failover(
    subscription_type: str,
) -> None:
    with pytest.raises(ValueError, match="needs input.subscriptionType Failover"):
        make_config(
            input={**FAILOVER, "subscriptionType": subscription_type},
            delivery={"guarantee": "EffectivelyOnce"},
        )


async def test_worker_dead_letters_the_message_when_its_position_does_not_fit_a_sequence_id() -> (
    None
):
    h = await start(effectively_once(batching={"maxBatchSize": 2, "maxDelayMs": 200}))
    fits = h.source.publish(item(1))
    too_far = h.source.publish(item(2))
    queued = [h.source._queue.get_nowait() for _ in range(2)]  # noqa: SLF001 - move one past the layout
    h.source._queue.put_nowait(queued[0])  # noqa: SLF001
    h.source._queue.put_nowait(replace(queued[1], position=Position(0, 2**32, 0, -1)))  # noqa: SLF001
    await h.wait_settled(2)
    await h.stop()
    assert sorted(h.source.acked) == sorted([fits, too_far])
    assert [o["id"] for o in h.sinks[0].items()] == ["item-1"]
    (dead,) = h.dead_letter.sent
    assert dead.properties["streamvane-error"] == "position-out-of-range"
