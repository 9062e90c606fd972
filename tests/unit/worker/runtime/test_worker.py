from __future__ import annotations

import asyncio
import json

import pytest

from streamvane_worker.config import StageType
from streamvane_worker.inference.errors import (
    BackendOverloaded,
    BackendUnavailable,
    InferenceFailed,
)
from streamvane_worker.inference.testing import FakeBackend
from streamvane_worker.io.errors import PublishRejected, PulsarUnavailable
from streamvane_worker.io.testing import FakeAttemptLog
from streamvane_worker.runtime import worker as worker_module
from streamvane_worker.runtime.worker import ERROR_PROPERTY, SOURCE_ID_PROPERTY
from streamvane_worker.stages.item import ContentItem

from ..harness import item, make_config, start, wait_for


async def test_worker_publishes_one_enriched_output_per_input_when_inputs_are_valid() -> None:
    h = await start()
    ids = [h.source.publish(item(i)) for i in range(50)]
    await h.wait_settled(50)
    await h.stop()
    outputs = h.sinks[0].items()
    assert sorted(o["id"] for o in outputs) == sorted(f"item-{i}" for i in range(50))
    assert sorted(h.source.acked) == sorted(ids)
    assert all(len(o["embedding"]["vector"]) == 384 for o in outputs)
    assert h.metric("messages_out_total") == 50


async def test_worker_batches_up_to_max_batch_size_when_backlog_is_large() -> None:
    config = make_config(batching={"maxBatchSize": 8, "maxDelayMs": 50})
    h = await start(config)
    for i in range(40):
        h.source.publish(item(i))
    await h.wait_settled(40)
    await h.stop()
    assert max(h.backend.calls) == 8
    assert sum(h.backend.calls) == 40


async def test_worker_flushes_partial_batch_when_max_delay_passes() -> None:
    config = make_config(batching={"maxBatchSize": 64, "maxDelayMs": 20})
    h = await start(config)
    for i in range(3):
        h.source.publish(item(i))
    await h.wait_settled(3, timeout=1.0)
    await h.stop()
    assert h.backend.calls == [3]


async def test_worker_acks_only_after_every_output_is_sent_when_there_are_two_outputs() -> None:
    config = make_config(outputs=("persistent://t/n/a", "persistent://t/n/b"))
    h = await start(config, sink_delay_s=0.01)
    ids = [h.source.publish(item(i)) for i in range(20)]
    await h.wait_settled(20)
    await h.stop()
    for message_id in ids:
        ack_at = h.events.index(("ack", message_id))
        sends = [i for i, e in enumerate(h.events) if e[0] == "send" and e[2] == message_id]
        assert len(sends) == 2
        assert max(sends) < ack_at


async def test_worker_dead_letters_with_reason_when_input_is_malformed() -> None:
    config = make_config(delivery={"maxMessageBytes": 2000})
    h = await start(config)
    bad = {
        h.source.publish(b"not json {"): "not-json",
        h.source.publish({"title": "no id"}): "schema",
        h.source.publish(item(1, title="x" * 3000)): "oversize",
        h.source.publish({"id": "empty"}): "no-text",
    }
    good = h.source.publish(item(2))
    await h.wait_settled(5)
    await h.stop()
    reasons = {
        m.properties[SOURCE_ID_PROPERTY]: m.properties[ERROR_PROPERTY] for m in h.dead_letter.sent
    }
    assert reasons == bad
    assert sorted(h.source.acked) == sorted([*bad, good])
    assert [o["id"] for o in h.sinks[0].items()] == ["item-2"]
    assert h.metric("messages_dead_lettered_total", reason="schema") == 1


async def test_worker_keeps_original_payload_and_properties_when_dead_lettering() -> None:
    h = await start()
    h.source.publish(b"\xff\xfe", properties={"traceparent": "x", "origin": "crawler"})
    await h.wait_settled(1)
    await h.stop()
    payload, properties = h.dead_letter.sent[0].payload, h.dead_letter.sent[0].properties
    assert payload == b"\xff\xfe"
    assert properties["origin"] == "crawler"
    assert properties["streamvane-stage"] == "s"


async def test_worker_retries_in_place_without_nacking_when_backend_is_unavailable() -> None:
    backend = FakeBackend(failures=[BackendUnavailable("triton down"), BackendUnavailable("down")])
    h = await start(backend=backend)
    first = h.source.publish(item(1))
    await h.wait_settled(1)
    await h.stop()
    assert h.source.acked == [first]
    assert h.source.nacked == []
    assert h.dead_letter.sent == []
    assert h.backend.calls == [1, 1, 1]
    assert h.metric("retries_total", reason="backend-unavailable") == 2


async def test_worker_halves_its_concurrency_and_retries_when_backend_is_overloaded() -> None:
    backend = FakeBackend(failures=[BackendOverloaded("deadline exceeded")])
    h = await start(make_config(batching={"maxInFlightBatches": 8}), backend=backend)
    first = h.source.publish(item(1))
    await h.wait_settled(1)
    await h.stop()
    assert h.source.acked == [first] and h.source.nacked == []
    assert 4 <= h.metric("in_flight_batches_limit") < 5
    assert h.metric("retries_total", reason="backend-overloaded") == 1


async def test_worker_hands_back_held_messages_unsettled_when_draining_during_an_outage() -> None:
    backend = FakeBackend(failures=[BackendUnavailable("down")] * 1000)
    h = await start(backend=backend)
    h.source.publish(item(1))
    await wait_for(lambda: len(h.backend.calls) >= 1)
    h.backend.is_ready = False
    await h.stop()
    assert h.source.acked == [] and h.source.nacked == []
    assert h.metric("in_flight_messages") == 0
    assert h.attempts.ended == h.attempts.begun


async def test_worker_keeps_tagging_items_with_embeddings_when_backend_is_down() -> None:
    params = {"labels": [{"name": "cats", "description": "cats"}]}
    h = await start(make_config(StageType.TAGGING, params=params))
    await wait_for(lambda: h.worker.ready)
    h.backend.is_ready = False
    h.backend.failures = [BackendUnavailable("down")] * 1000
    await asyncio.sleep(1.2)  # one readiness round sees the backend down
    vector = [1.0] + [0.0] * 383
    embedding = {"vector": vector, "model": "fake-model", "modelVersion": "7"}
    done = h.source.publish(item(1, embedding=embedding))
    await h.wait_settled(1)
    assert h.worker.ready
    await h.stop()
    assert h.source.acked == [done]
    assert h.sinks[0].items()[0]["tags"]


async def test_worker_quarantines_a_message_as_crash_loop_when_workers_died_holding_it() -> None:
    h = await start()
    h.attempts.crashed("m0", 5)  # maxCrashes 5
    killer = h.source.publish(item(1))
    fine = h.source.publish(item(2))
    await h.wait_settled(2)
    await h.stop()
    assert sorted(h.source.acked) == sorted([killer, fine])
    (dead,) = h.dead_letter.sent
    assert dead.properties[ERROR_PROPERTY] == "crash-loop"
    assert dead.properties[SOURCE_ID_PROPERTY] == killer
    assert [o["id"] for o in h.sinks[0].items()] == ["item-2"]
    assert h.metric("messages_quarantined_total") == 1
    assert h.metric("redeliveries_total") == 1
    assert h.attempts.open == {}


async def test_worker_works_alone_on_a_message_a_worker_died_holding_when_batched() -> None:
    config = make_config(batching={"maxBatchSize": 3, "maxDelayMs": 100})
    h = await start(config)
    h.attempts.crashed("m1", 1)
    ids = [h.source.publish(item(i)) for i in range(3)]
    await h.wait_settled(3)
    await h.stop()
    assert sorted(h.source.acked) == sorted(ids)
    assert h.backend.calls == [2, 1]
    assert [o["id"] for o in h.sinks[0].items()] == ["item-0", "item-2", "item-1"]
    assert h.attempts.open == {}


async def test_worker_retries_the_journal_without_counting_when_it_cannot_be_written() -> None:
    attempts = FakeAttemptLog()
    attempts.fail_with = [PulsarUnavailable("broker down")]
    h = await start(attempts=attempts)
    first = h.source.publish(item(1))
    await h.wait_settled(1)
    await h.stop()
    assert h.source.acked == [first]
    assert h.metric("retries_total", reason="attempt-log") == 1


async def test_worker_dead_letters_only_that_item_when_its_result_cannot_be_encoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = worker_module.encode

    def encode(item: ContentItem) -> bytes:
        if item.id == "item-2":
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return real(item)

    monkeypatch.setattr(worker_module, "encode", encode)
    h = await start()
    for i in range(4):
        h.source.publish(item(i))
    await h.wait_settled(4)
    await h.stop()
    assert len(h.source.acked) == 4
    assert [m.properties[ERROR_PROPERTY] for m in h.dead_letter.sent] == ["encode-failed"]
    assert sorted(o["id"] for o in h.sinks[0].items()) == ["item-0", "item-1", "item-3"]


async def test_worker_retries_every_message_of_a_batch_later_when_it_fails_unexpectedly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0

    def decode(payload: bytes, limits: object, model: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RecursionError("maximum recursion depth exceeded")
        return real(payload, limits, model)  # type: ignore[arg-type]

    real = worker_module.decode
    monkeypatch.setattr(worker_module, "decode", decode)
    config = make_config(batching={"maxBatchSize": 3, "maxDelayMs": 50})
    h = await start(config)
    for i in range(3):
        h.source.publish(item(i))
    await h.wait_settled(3)
    later = h.source.publish(item(9))
    await wait_for(lambda: later in h.source.acked)
    await h.stop()
    assert sorted(h.retry.items(), key=str) == sorted([item(i) for i in range(3)], key=str)
    assert h.metric("messages_failed_total", reason="batch-failed") == 3
    assert h.metric("in_flight_messages") == 0


async def test_worker_is_not_live_when_a_message_stays_in_flight_too_long() -> None:
    config = make_config(delivery={"maxInFlightAgeS": 0.3})
    h = await start(config, backend=FakeBackend(latencies_s=[1.0]))
    h.source.publish(item(1))
    await wait_for(lambda: h.metric("in_flight_messages") == 1)
    assert h.worker.live()
    await wait_for(lambda: not h.worker.live(), timeout=2)
    assert h.metric("oldest_in_flight_age_seconds") > 0.3
    await h.wait_settled(1)
    assert h.worker.live()
    assert h.metric("oldest_in_flight_age_seconds") == 0
    await h.stop()


async def test_worker_isolates_and_retries_poison_message_later_when_model_rejects_batch() -> None:
    backend = FakeBackend(failures=[InferenceFailed("bad input"), None, InferenceFailed("bad")])
    config = make_config(batching={"maxBatchSize": 2, "maxDelayMs": 200})
    h = await start(config, backend=backend)
    ok = h.source.publish(item(1))
    poison = h.source.publish(item(2))
    await h.wait_settled(2)
    await h.stop()
    assert sorted(h.source.acked) == sorted([ok, poison])
    assert h.source.nacked == []
    (retried,) = h.retry.sent  # re-published for a later delivery: no batch-entry redelivery
    assert json.loads(retried.payload)["id"] == "item-2"
    assert retried.properties["streamvane-deliveries"] == "1"
    assert retried.deliver_after_ms == 1000  # negativeAckDelayMs


async def test_worker_dead_letters_poison_message_when_on_its_last_delivery() -> None:
    backend = FakeBackend(failures=[InferenceFailed("model rejected input")])
    h = await start(backend=backend)
    poison = h.source.publish(item(1), properties={"streamvane-deliveries": "4"})  # 5th of 5
    await h.wait_settled(1)
    await h.stop()
    assert h.source.acked == [poison]
    properties = h.dead_letter.sent[0].properties
    assert properties[ERROR_PROPERTY] == "inference-failed"
    assert "model rejected input" in properties["streamvane-error-detail"]


async def test_worker_dead_letters_when_a_retried_message_carries_a_spent_budget() -> None:
    h = await start()
    spent = h.source.publish(item(1), properties={"streamvane-deliveries": "5"})
    await h.wait_settled(1)
    await h.stop()
    assert h.dead_letter.sent[0].properties[ERROR_PROPERTY] == "max-redeliveries"
    assert h.source.acked == [spent]


async def test_worker_ignores_the_broker_redelivery_count_when_a_worker_died_holding_it() -> None:
    h = await start()
    held = h.source.publish(item(1), redelivery_count=12)  # prefetched by workers that died
    await h.wait_settled(1)
    await h.stop()
    assert h.source.acked == [held]
    assert h.dead_letter.sent == []
    assert [o["id"] for o in h.sinks[0].items()] == ["item-1"]
    assert h.metric("redeliveries_total") == 1


async def test_worker_resends_only_what_failed_without_nacking_when_a_send_fails() -> None:
    config = make_config(outputs=("persistent://t/n/a", "persistent://t/n/b"))
    h = await start(config)
    h.sinks[1].fail_with = [PulsarUnavailable("timeout")]
    failed = h.source.publish(item(1))
    await h.wait_settled(1)
    await h.stop()
    assert h.source.acked == [failed] and h.source.nacked == []
    assert [len(sink.sent) for sink in h.sinks] == [1, 1]
    assert h.metric("retries_total", reason="publish-failed") == 1
    assert h.dead_letter.sent == []


async def test_worker_dead_letters_when_broker_rejects_output() -> None:
    h = await start()
    h.sinks[0].fail_with = [PublishRejected("MessageTooBig")]
    rejected = h.source.publish(item(1))
    await h.wait_settled(1)
    await h.stop()
    assert h.source.acked == [rejected]
    assert h.dead_letter.sent[0].properties[ERROR_PROPERTY] == "publish-rejected"


async def test_worker_finishes_in_flight_batches_when_draining() -> None:
    config = make_config(batching={"maxBatchSize": 4, "maxDelayMs": 5, "maxInFlightBatches": 2})
    h = await start(config, sink_delay_s=0.05)
    for i in range(30):
        h.source.publish(item(i))
    await wait_for(lambda: len(h.sinks[0].sent) >= 4)
    await h.stop()
    received = 30 - h.source.pending()
    assert received < 30 and len(h.source.acked) == received
    assert h.source.nacked == []
    assert h.sinks[0].closed and h.dead_letter.closed and h.source.closed
    assert h.metric("in_flight_messages") == 0


async def test_worker_bounds_messages_in_flight_when_sink_is_slow() -> None:
    config = make_config(batching={"maxBatchSize": 4, "maxDelayMs": 1, "maxInFlightBatches": 2})
    h = await start(config, sink_delay_s=0.02)
    for i in range(200):
        h.source.publish(item(i))
    peak = 0.0
    for _ in range(50):
        peak = max(peak, h.metric("in_flight_messages"))
        await asyncio.sleep(0.005)
    await h.stop()
    # in flight <= batches being processed + one received and waiting for a slot
    assert peak <= 4 * 2 + 4
    assert h.source.pending() > 0


async def test_worker_continues_the_trace_when_input_carries_traceparent() -> None:
    h = await start(make_config(StageType.PASSTHROUGH))
    trace = "0af7651916cd43dd8448eb211c80319c"
    h.source.publish(item(1), properties={"traceparent": f"00-{trace}-b7ad6b7169203331-01"})
    await h.wait_settled(1)
    await h.stop()
    sent = h.sinks[0].sent[0]
    assert sent.properties["traceparent"].split("-")[1] == trace
    assert sent.key == "item-1"
    assert json.loads(sent.payload)["stages"][0]["stageType"] == "passthrough"


async def test_worker_reports_not_ready_when_backend_is_down() -> None:
    h = await start()
    await wait_for(lambda: h.worker.ready)
    h.backend.is_ready = False
    await wait_for(lambda: not h.worker.ready, timeout=3)
    await h.stop()


async def test_worker_publishes_in_receive_order_when_an_earlier_batch_infers_slower() -> None:
    config = make_config(batching={"maxBatchSize": 2, "maxDelayMs": 1, "maxInFlightBatches": 4})
    h = await start(config, backend=FakeBackend(latencies_s=[0.2, 0.0, 0.0]))
    for i in range(6):
        h.source.publish(item(i))
    await h.wait_settled(6)
    await h.stop()
    assert [json.loads(m.payload)["id"] for m in h.sinks[0].issued] == [
        f"item-{i}" for i in range(6)
    ]
