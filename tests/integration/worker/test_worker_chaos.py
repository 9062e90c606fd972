"""Chaos: a stream of good and hostile messages while workers are SIGKILLed and the broker
restarts; checked by message: no good one lost, every bad one dead-lettered with its reason,
duplicates counted. Bounded in count and time (passthrough stage: the faults, not the model,
are under test; Triton outages are in test_worker_flow)."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pulsar
import pytest

from .pipeline import Collector, Topics, WorkerProcess, client, items, publish, worker_config

pytestmark = pytest.mark.integration

GOOD = 3000
BAD_PER_KIND = 100
KILLS = 5
START_TIMEOUT_S = 180  # a worker starts in seconds; far longer on a machine shared by many


def hostile(i: int) -> dict[bytes, str]:
    """One payload of every malformed kind, unique per ``i``, with the reason expected
    (``no-text`` is not among them: the passthrough stage needs no text)."""
    return {
        b"{not json %d" % i: "not-json",
        json.dumps({"title": f"no id {i}"}).encode(): "schema",
        b'{"id": "deep-%d", "x": ' % i + b"[" * 3000 + b"]" * 3000 + b"}": "too-deep",
        b'{"id": "num-%d", "title": "t", "n": ' % i + b"9" * 5000 + b"}": "number-too-large",
        b'{"id": "lone-%d", "title": "\\ud800"}' % i: "invalid-string",
    }


def interleaved() -> tuple[list[bytes | dict[str, Any]], dict[bytes, str]]:
    bad: dict[bytes, str] = {}
    for i in range(BAD_PER_KIND):
        bad |= hostile(i)
    good = list(items(GOOD))
    stream: list[bytes | dict[str, Any]] = []
    step = len(good) // len(bad)
    for n, payload in enumerate(bad):
        stream += [*good[n * step : (n + 1) * step], payload]
    stream += good[len(bad) * step :]
    return stream, bad


def check(out: Collector, dead: Collector, bad: dict[bytes, str]) -> int:
    """Asserts nothing good was lost and every bad message was dead-lettered with its reason;
    returns the number of duplicate outputs."""
    assert out.until_ids({f"item-{i}" for i in range(GOOD)}, timeout=120) == set()
    deadline = time.monotonic() + 60
    payloads = {m.data() for m in dead.messages}
    while len(payloads) < len(bad) and time.monotonic() < deadline:
        seen = len(dead.messages)
        dead.until(seen + len(bad) - len(payloads), timeout=2)
        payloads.update(m.data() for m in dead.messages[seen:])
    reasons = {m.data(): m.properties()["streamvane-error"] for m in dead.messages}
    assert {payload: reasons.get(payload) for payload in bad} == bad
    assert all(m.properties()["streamvane-error-detail"] for m in dead.messages)
    assert not set(out.ids()) - {f"item-{i}" for i in range(GOOD)}
    return sum(n - 1 for n in Counter(out.ids()).values())


def test_worker_loses_no_good_message_when_sigkilled_repeatedly_amid_hostile_payloads(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    started = time.monotonic()
    topics = Topics.unique("it-chaos-kill")
    config = worker_config(stack, topics, "passthrough")
    out = Collector(pulsar_client, topics.output)
    dead = Collector(pulsar_client, topics.dead_letter)
    stream, bad = interleaved()
    publish(pulsar_client, topics.input, stream)
    for kill in range(KILLS + 1):
        worker = WorkerProcess(config, tmp_path).start()
        workers.append(worker)
        worker.wait_started(timeout=START_TIMEOUT_S)
        if kill == KILLS:
            break
        seen = len(out.messages)
        out.until(seen + 300, timeout=30)  # killed mid-stream, with batches in flight
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait()
    duplicates = check(out, dead, bad)
    print(
        f"chaos: {KILLS} SIGKILLs, {GOOD} good + {len(bad)} hostile messages, "
        f"{duplicates} duplicates, {time.monotonic() - started:.0f}s"
    )
    assert workers[-1].terminate() == 0


def test_worker_loses_no_good_message_when_the_broker_restarts_mid_stream(
    private_pulsar: Any, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    started = time.monotonic()
    endpoints = SimpleNamespace(
        pulsar_url=f"pulsar://127.0.0.1:{private_pulsar.settings.pulsar_port}"
    )
    topics = Topics.unique("it-chaos-broker")
    config = worker_config(endpoints, topics, "passthrough")
    pulsar_client = client(endpoints)
    try:
        out = Collector(pulsar_client, topics.output)
        dead = Collector(pulsar_client, topics.dead_letter)
        stream, bad = interleaved()
        publish(pulsar_client, topics.input, stream)
        worker = WorkerProcess(config, tmp_path).start()
        workers.append(worker)
        worker.wait_started(timeout=START_TIMEOUT_S)
        out.until(500, timeout=30)
        private_pulsar.daemon.stop()
        private_pulsar.start()
        private_pulsar.wait_ready(lambda _: None)
        duplicates = check(out, dead, bad)
        print(
            f"chaos: broker restart, {GOOD} good + {len(bad)} hostile messages, "
            f"{duplicates} duplicates, {time.monotonic() - started:.0f}s"
        )
        assert worker.terminate() == 0
    finally:
        pulsar_client.close()
