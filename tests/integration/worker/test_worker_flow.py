"""A real worker process against the real Pulsar and Triton of the local stack."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pulsar
import pytest

from .pipeline import Collector, Topics, WorkerProcess, items, publish, worker_config

pytestmark = pytest.mark.integration


def test_worker_produces_exactly_one_output_per_input_when_consuming_10000_items(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    topics = Topics.unique("it-10k")
    collector = Collector(pulsar_client, topics.output)
    worker = WorkerProcess(worker_config(stack, topics), tmp_path).start()
    workers.append(worker)
    worker.wait_started()
    sent = publish(pulsar_client, topics.input, items(10_000))
    messages = collector.until(sent, timeout=100)
    ids = collector.ids()
    assert len(ids) == sent, f"{len(ids)} of {sent} outputs"
    assert set(ids) == {f"item-{i}" for i in range(sent)}
    first = json.loads(messages[0].data())
    assert len(first["embedding"]["vector"]) == 384
    assert first["stages"][-1]["model"] == "all-minilm-l6-v2"
    assert messages[0].properties()["traceparent"].startswith("00-")
    assert worker.terminate() == 0


BROKER_MAX_MESSAGE = 5 * 1024 * 1024  # Pulsar's default maxMessageSize


def test_worker_dead_letters_malformed_and_poison_messages_with_reasons_when_good_ones_flow(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    topics = Topics.unique("it-dlq")
    limit = BROKER_MAX_MESSAGE - 4_000
    config = worker_config(stack, topics, delivery={"maxMessageBytes": limit})
    dead = Collector(pulsar_client, topics.dead_letter)
    out = Collector(pulsar_client, topics.output)
    worker = WorkerProcess(config, tmp_path).start()
    workers.append(worker)
    worker.wait_started()
    # Poison: valid and under the worker's limit, but its enriched output (input + 384 floats)
    # is over the broker's limit, so the broker rejects every attempt to publish the result.
    poison = {"id": "poison", "title": "x" * (limit - 100)}
    bad = [
        b"{not json",
        {"title": "no id"},
        {"id": "huge", "title": "x" * (limit + 100)},
        {"id": "blank"},
        poison,
        b"[" * 5000 + b"]" * 5000,
        b'{"id": "big", "title": "t", "n": ' + b"9" * 5000 + b"}",
        b'{"id": "lone", "title": "\\ud800"}',
    ]
    publish(pulsar_client, topics.input, [*items(50), *bad, *items(50, start=50)])
    out.until(100, timeout=60)
    assert sorted(out.ids()) == sorted(f"item-{i}" for i in range(100))
    reasons = sorted(m.properties()["streamvane-error"] for m in dead.until(8, timeout=30))
    assert reasons == [
        "invalid-string",
        "no-text",
        "not-json",
        "number-too-large",
        "oversize",
        "publish-rejected",
        "schema",
        "too-deep",
    ]
    for message in dead.messages:
        properties = message.properties()
        assert properties["streamvane-stage"] == "text-embedding"
        assert properties["streamvane-source-topic"] == topics.input
        assert properties["streamvane-source-message-id"]
        assert properties["streamvane-error-detail"]
    assert worker.http_get("/readyz") == (200, "ready\n")
    status, metrics = worker.http_get("/metrics")
    assert status == 200
    assert 'streamvane_worker_messages_dead_lettered_total{pipeline="it",reason="schema"' in metrics
    assert worker.terminate() == 0


TRITON_OUTAGE_S = 60
RECOVERY_BOUND_S = 10
RECOVERED_OUTPUTS = 128


def test_worker_is_back_to_full_goodput_within_10s_when_triton_returns_after_a_60s_outage(
    stack: Any,
    private_triton: Any,
    pulsar_client: pulsar.Client,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    topics = Topics.unique("it-triton-down")
    triton_url = f"127.0.0.1:{private_triton.settings.triton_grpc_port}"
    config = worker_config(stack, topics, inference={"tritonUrl": triton_url})
    collector = Collector(pulsar_client, topics.output)
    dead = Collector(pulsar_client, topics.dead_letter)
    worker = WorkerProcess(config, tmp_path).start()
    workers.append(worker)
    worker.wait_started()
    sent = publish(pulsar_client, topics.input, items(1500))
    collector.until(200, timeout=60)
    private_triton.daemon.stop()  # graceful: Triton unloads the model before its port closes
    time.sleep(TRITON_OUTAGE_S)  # the outage itself
    private_triton.start()
    private_triton.wait_ready(lambda _: None)
    ready_ms = time.time() * 1000
    assert collector.until_ids({f"item-{i}" for i in range(sent)}, timeout=180) == set()
    after = sorted(
        m.publish_timestamp() for m in collector.messages if m.publish_timestamp() > ready_ms
    )
    recovery_s = (after[RECOVERED_OUTPUTS - 1] - ready_ms) / 1000
    print(f"{RECOVERED_OUTPUTS} outputs {recovery_s:.1f}s after Triton was ready again")
    assert recovery_s < RECOVERY_BOUND_S
    assert dead.until(1, timeout=2) == []
    assert worker.events("backend_down") and worker.events("backend_up")
    _, metrics = worker.http_get("/metrics")
    assert 'streamvane_worker_retries_total{pipeline="it",reason="backend-unavailable"' in metrics
    assert "streamvane_worker_messages_failed_total{" not in metrics  # nothing was nacked
    assert worker.terminate() == 0


def test_worker_loses_nothing_when_sigterm_arrives_mid_stream_and_a_new_worker_resumes(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    topics = Topics.unique("it-sigterm")
    config = worker_config(stack, topics)
    collector = Collector(pulsar_client, topics.output)
    first = WorkerProcess(config, tmp_path).start()
    workers.append(first)
    first.wait_started()
    # Unbatched input: the broker acks whole batch entries unless batch-index acks are enabled,
    # which would turn a clean drain into redelivered duplicates and hide a drain bug.
    sent = publish(pulsar_client, topics.input, items(4000), batching=False)
    collector.until(800, timeout=30)
    assert first.terminate() == 0
    assert first.events("drain_done")
    second = WorkerProcess(config, tmp_path).start()
    workers.append(second)
    second.wait_started()
    collector.until(sent, timeout=60)
    deadline = time.monotonic() + 30
    while len(set(collector.ids())) < sent and time.monotonic() < deadline:
        collector.until(len(collector.messages) + 100, timeout=2)
    ids = collector.ids()
    assert set(ids) == {f"item-{i}" for i in range(sent)}
    duplicates = sum(n - 1 for n in Counter(ids).values())
    assert duplicates == 0, f"{duplicates} duplicates: drain did not ack all it published"
    assert second.terminate() == 0
