"""Effectively-once against a real broker: a stream through a passthrough stage while the
worker is SIGKILLed repeatedly and the broker restarts; checked by stored output message:
every input written exactly once."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pulsar
import pytest

from streamvane_operator.pulsar.admin import PulsarAdmin, Retention, TopicName

from .pipeline import Collector, Topics, WorkerProcess, client, items, publish, worker_config

pytestmark = pytest.mark.integration

GOOD = 2000
KILLS = 3
PARTITIONS = 2
START_TIMEOUT_S = 120


def stored_ids(c: pulsar.Client, topic: str) -> list[str]:
    """The item id of every message the topic holds, each stored message read once."""
    reader = c.create_reader(topic, pulsar.MessageId.earliest)
    found: list[str] = []
    try:
        while reader.has_message_available():
            found.append(reader.read_next(30_000).properties()["streamvane-item-id"])
    finally:
        reader.close()
    return found


def test_worker_writes_each_output_once_when_sigkilled_repeatedly_and_the_broker_restarts(
    private_pulsar: Any, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    started = time.monotonic()
    port, admin_port = (
        private_pulsar.settings.pulsar_port,
        private_pulsar.settings.pulsar_admin_port,
    )
    endpoints = SimpleNamespace(pulsar_url=f"pulsar://127.0.0.1:{port}")
    admin = PulsarAdmin(f"http://127.0.0.1:{admin_port}")
    topics = Topics.unique("it-eo")
    admin.create_topic(TopicName.parse(topics.input), PARTITIONS)
    admin.create_topic(TopicName.parse(topics.output), 0)
    admin.set_deduplication(TopicName.parse(topics.output), True)
    # Kept after the collector acks them, so that the reader at the end sees every output.
    admin.set_retention(TopicName.parse(topics.output), Retention(60, -1))
    assert admin.deduplication(TopicName.parse(topics.output)) is True
    config = worker_config(
        endpoints,
        topics,
        "passthrough",
        input={"subscriptionType": "Failover"},
        delivery={"guarantee": "EffectivelyOnce"},
        # Small batches: the stream is still flowing when the broker restarts.
        batching={"maxBatchSize": 16, "maxDelayMs": 5, "maxInFlightBatches": 2},
    )
    pulsar_client = client(endpoints)
    try:
        out = Collector(pulsar_client, topics.output)
        # Producer-batched input, half on each partition: outputs of one batch entry get
        # distinct sequence ids, each partition its own producer.
        half = GOOD // PARTITIONS
        for partition in range(PARTITIONS):
            partition_topic = f"{topics.input}-partition-{partition}"
            publish(pulsar_client, partition_topic, items(half, start=partition * half))
        for _ in range(KILLS):
            worker = WorkerProcess(config, tmp_path).start()
            workers.append(worker)
            worker.wait_started(timeout=START_TIMEOUT_S)
            out.until(len(out.messages) + 200, timeout=60)  # killed with batches in flight
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGKILL)
            worker.proc.wait()
        worker = WorkerProcess(config, tmp_path).start()
        workers.append(worker)
        worker.wait_started(timeout=START_TIMEOUT_S)
        out.until(len(out.messages) + 200, timeout=60)
        written_before_restart = len(set(out.ids()))
        private_pulsar.daemon.stop()
        private_pulsar.start()
        private_pulsar.wait_ready(lambda _: None)
        assert written_before_restart < GOOD, "the stream ended before the broker restart"
        assert out.until_ids({f"item-{i}" for i in range(GOOD)}, timeout=120) == set()
        stored = stored_ids(pulsar_client, topics.output)
        duplicates = {k: n for k, n in Counter(stored).items() if n > 1}
        assert duplicates == {}
        assert sorted(stored) == sorted(f"item-{i}" for i in range(GOOD))
        # The kills did leave messages that the next worker processed again.
        replayed = sum(e["count"] for w in workers for e in w.events("suspects_isolated"))
        assert replayed > 0
        print(
            f"effectively-once: {KILLS} SIGKILLs + broker restart, {GOOD} inputs on "
            f"{PARTITIONS} partitions ({written_before_restart} written before the restart), "
            f"{replayed} processed again, 0 duplicates stored, "
            f"{time.monotonic() - started:.0f}s"
        )
        assert worker.terminate() == 0
    finally:
        pulsar_client.close()
        admin.close()
