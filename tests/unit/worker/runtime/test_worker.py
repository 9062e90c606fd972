from __future__ import annotations

import asyncio
import json

from streamvane_worker.config import StageType
from streamvane_worker.inference.errors import BackendUnavailable, InferenceFailed
from streamvane_worker.inference.testing import FakeBackend
from streamvane_worker.io.errors import PublishRejected, PulsarUnavailable
from streamvane_worker.runtime.worker import ERROR_PROPERTY, SOURCE_ID_PROPERTY

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


async def test_worker_nacks_without_dead_lettering_when_backend_is_unavailable() -> None:
    backend = FakeBackend(failures=[BackendUnavailable("triton down")])
    h = await start(backend=backend)
    first = h.source.publish(item(1))
    await h.wait_settled(1)
    assert h.source.nacked == [first]
    second = h.source.publish(item(2))
    await wait_for(lambda: second in h.source.acked, timeout=3)
    await h.stop()
    assert h.dead_letter.sent == []
    assert h.metric("messages_failed_total", reason="backend-unavailable") == 1


async def test_worker_isolates_and_nacks_poison_message_when_model_rejects_batch() -> None:
    backend = FakeBackend(failures=[InferenceFailed("bad input"), None, InferenceFailed("bad")])
    config = make_config(batching={"maxBatchSize": 2, "maxDelayMs": 200})
    h = await start(config, backend=backend)
    ok = h.source.publish(item(1))
    poison = h.source.publish(item(2))
    await h.wait_settled(2)
    await h.stop()
    assert h.source.acked == [ok]
    assert h.source.nacked == [poison]


async def test_worker_dead_letters_poison_message_when_on_its_last_delivery() -> None:
    backend = FakeBackend(failures=[InferenceFailed("model rejected input")])
    h = await start(backend=backend)
    poison = h.source.publish(item(1), redelivery_count=4)  # 5th delivery, maxRedeliveries 5
    await h.wait_settled(1)
    await h.stop()
    assert h.source.acked == [poison]
    properties = h.dead_letter.sent[0].properties
    assert properties[ERROR_PROPERTY] == "inference-failed"
    assert "model rejected input" in properties["streamvane-error-detail"]


async def test_worker_dead_letters_at_once_when_redelivery_budget_is_spent() -> None:
    h = await start()
    spent = h.source.publish(item(1), redelivery_count=5)
    await h.wait_settled(1)
    await h.stop()
    assert h.dead_letter.sent[0].properties[ERROR_PROPERTY] == "max-redeliveries"
    assert h.source.acked == [spent]
    assert h.backend.calls == []


async def test_worker_nacks_when_broker_send_fails_transiently() -> None:
    h = await start()
    h.sinks[0].fail_with = [PulsarUnavailable("timeout")]
    failed = h.source.publish(item(1))
    await h.wait_settled(1)
    await h.stop()
    assert h.source.nacked == [failed]
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
