"""Delivery under faults, against the real Pulsar (and Triton): crash loops, outages."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pulsar
import pytest

from .pipeline import (
    FAULTY_WORKER_COMMAND,
    Collector,
    Topics,
    WorkerProcess,
    items,
    publish,
    worker_config,
)

pytestmark = pytest.mark.integration


def test_worker_quarantines_a_message_that_kills_it_as_crash_loop_when_restarted_each_time(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    topics = Topics.unique("it-crash")
    config = worker_config(stack, topics, "passthrough", delivery={"maxCrashes": 2})
    out = Collector(pulsar_client, topics.output)
    dead = Collector(pulsar_client, topics.dead_letter)
    killer = {"id": "crash-1", "title": "kills the worker"}
    publish(pulsar_client, topics.input, [*items(100), killer, *items(100, start=100)])
    crashes = 0
    deadline = time.monotonic() + 120
    while not dead.messages and time.monotonic() < deadline:
        worker = WorkerProcess(config, tmp_path, command=FAULTY_WORKER_COMMAND).start()
        workers.append(worker)  # restarted like a pod, each time it dies
        assert worker.proc is not None
        while worker.proc.poll() is None and not dead.until(1, timeout=0.5):
            assert time.monotonic() < deadline, worker.logs()
        crashes += worker.proc.poll() is not None
    (quarantined,) = dead.messages
    assert quarantined.properties()["streamvane-error"] == "crash-loop"
    assert quarantined.properties()["streamvane-crash-count"] == "2"
    assert crashes == 2
    assert out.until_ids({f"item-{i}" for i in range(200)}, timeout=60) == set()
    status, metrics = workers[-1].http_get("/metrics")
    assert status == 200
    assert (
        'streamvane_worker_messages_quarantined_total{pipeline="it",stage="passthrough"} 1.0'
        in (metrics)
    )
    assert workers[-1].terminate() == 0


def test_worker_redelivers_only_the_failing_message_when_it_sits_in_a_producer_batch(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    topics = Topics.unique("it-retry")
    config = worker_config(stack, topics, "passthrough", delivery={"maxRedeliveries": 3})
    out = Collector(pulsar_client, topics.output)
    dead = Collector(pulsar_client, topics.dead_letter)
    worker = WorkerProcess(config, tmp_path, command=FAULTY_WORKER_COMMAND).start()
    workers.append(worker)
    worker.wait_started(timeout=180)
    failing = {"id": "fail-1", "title": "the stage raises on it"}
    publish(pulsar_client, topics.input, [*items(500), failing, *items(500, start=500)])
    (dead_lettered,) = dead.until(1, timeout=120)
    assert dead_lettered.properties()["streamvane-error"] == "stage-error"
    assert dead_lettered.properties()["streamvane-redelivery-count"] == "2"
    assert out.until_ids({f"item-{i}" for i in range(1000)}, timeout=60) == set()
    out.until(len(out.messages) + 1, timeout=3)  # anything redelivered late
    duplicates = sum(n - 1 for n in Counter(out.ids()).values())
    print(f"one failing message among 1000 producer-batched items: {duplicates} duplicates")
    assert duplicates == 0
    assert worker.terminate() == 0
