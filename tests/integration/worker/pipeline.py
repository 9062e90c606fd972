"""Helpers for integration tests: unique topics, a worker subprocess, publishing and collecting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pulsar

from streamvane_stack.publish import send_all
from streamvane_worker.__main__ import EXIT_STARTUP
from streamvane_worker.config import CONFIG_FILE_ENV
from streamvane_worker.inference.ranker import DENSE_FEATURES


@dataclass(frozen=True)
class Topics:
    input: str
    output: str
    dead_letter: str

    @classmethod
    def unique(cls, prefix: str) -> Topics:
        base = f"persistent://public/default/{prefix}-{uuid.uuid4().hex[:8]}"
        return cls(input=f"{base}-in", output=f"{base}-out", dead_letter=f"{base}-dlq")


def worker_config(
    stack: Any, topics: Topics, stage_type: str = "text-embedding", **overrides: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "pipeline": "it",
        "stage": stage_type,
        "stageType": stage_type,
        "pulsar": {"serviceUrl": stack.pulsar_url},
        "input": {"topic": topics.input, "subscription": "workers"},
        "outputs": [topics.output],
        "batching": {"maxBatchSize": 64, "maxDelayMs": 20, "maxInFlightBatches": 4},
        "delivery": {"deadLetterTopic": topics.dead_letter, "negativeAckDelayMs": 200},
        "healthPort": 0,
        "startupTimeoutS": 20,
    }
    if stage_type != "passthrough":
        config["inference"] = {"tritonUrl": stack.triton_grpc}
    for key, value in overrides.items():
        merge = isinstance(value, dict) and isinstance(config.get(key), dict)
        config[key] = {**config[key], **value} if merge else value
    return config


WORKER_COMMAND = [sys.executable, "-m", "streamvane_worker"]
FAULTY_WORKER_COMMAND = [sys.executable, str(Path(__file__).with_name("faulty_worker.py"))]
"""A worker whose passthrough stage SIGKILLs its own process on items with id ``crash-*`` and
raises on items with id ``fail-*``."""


@dataclass
class WorkerProcess:
    config: dict[str, Any]
    tmp: Path
    proc: subprocess.Popen[bytes] | None = None
    command: list[str] = field(default_factory=lambda: list(WORKER_COMMAND))
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.tmp / f"worker-{uuid.uuid4().hex[:6]}.log"

    def start(self) -> WorkerProcess:
        path = self.tmp / f"config-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(self.config))
        env = {**os.environ, CONFIG_FILE_ENV: str(path)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.command, env=env, stdout=log, stderr=log)
        return self

    def wait_started(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "worker_started" not in self.logs():
            assert self.proc is not None and self.proc.poll() is None, self.logs()
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.2)

    def startup_error(self, timeout: float = 60) -> str:
        """What a worker that could not start logged; it must exit with EXIT_STARTUP."""
        assert self.proc is not None
        assert self.proc.wait(timeout=timeout) == EXIT_STARTUP, self.logs()
        (failure,) = self.events("startup_failed")
        return str(failure["error"])

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def http_get(self, path: str) -> tuple[int, str]:
        (listening,) = self.events("health_listening")
        url = f"http://127.0.0.1:{listening['port']}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def logs(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.logs().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                found.append(json.loads(line))
        return found


def items(n: int, start: int = 0) -> Iterable[dict[str, Any]]:
    for i in range(start, start + n):
        yield {"id": f"item-{i}", "title": f"clip {i}", "description": "cats playing piano"}


def publish(
    client: pulsar.Client,
    topic: str,
    payloads: Iterable[bytes | dict[str, Any]],
    batching: bool = True,
) -> int:
    return send_all(
        client,
        topic,
        (p if isinstance(p, bytes) else json.dumps(p).encode() for p in payloads),
        batching=batching,
    )


def client(stack: Any) -> pulsar.Client:
    return pulsar.Client(stack.pulsar_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))


class Collector:
    """Reads a topic from the beginning on its own subscription."""

    def __init__(self, client: pulsar.Client, topic: str, subscription: str | None = None) -> None:
        self.subscription = subscription or f"collector-{uuid.uuid4().hex[:6]}"
        self._consumer = client.subscribe(
            topic,
            self.subscription,
            initial_position=pulsar.InitialPosition.Earliest,
            receiver_queue_size=2000,
        )
        self.messages: list[pulsar.Message] = []
        self._ids: list[str] = []
        """Item ids of ``messages[: len(_ids)]``: each payload is decoded once, so waiting for
        thousands of ids stays linear (decoding them all again per message read took minutes
        for 3 000 on a loaded machine)."""

    def until(self, count: int, timeout: float) -> list[pulsar.Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            try:
                msg = self._consumer.receive(timeout_millis=500)
            except pulsar.Timeout:
                continue
            self._consumer.acknowledge(msg)
            self.messages.append(msg)
        return self.messages

    def until_ids(self, expected: set[str], timeout: float) -> set[str]:
        """Reads until every expected item id arrived (duplicates do not count); returns the
        ids still missing."""
        deadline = time.monotonic() + timeout
        missing = expected - set(self.ids())
        while missing and time.monotonic() < deadline:
            seen = len(self.messages)
            self.until(seen + len(missing), timeout=min(2.0, deadline - time.monotonic()))
            missing.difference_update(self._decoded_ids()[seen:])
        return missing

    def ids(self) -> list[str]:
        """The item id of every message read so far, in the order read."""
        return list(self._decoded_ids())

    def _decoded_ids(self) -> list[str]:
        for message in self.messages[len(self._ids) :]:
            self._ids.append(json.loads(message.data())["id"])
        return self._ids

    def close(self) -> None:
        self._consumer.close()


DIM = 384
CLUSTERS = 6


class Tastes:
    """Users of ``CLUSTERS`` clusters; an item is liked far more often by its own cluster."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(CLUSTERS, DIM))
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        self.rng = rng

    def examples(
        self, n: int, start: int, *, inverted: bool = False, ts_ms: int | None = None
    ) -> list[bytes]:
        """``n`` TrainingExample payloads numbered from ``start``; ``ts_ms``: their event time
        (default: a fixed past one, spaced by a millisecond)."""
        rng = self.rng
        users = rng.integers(CLUSTERS, size=n)
        items = rng.integers(CLUSTERS, size=n)
        noise = rng.normal(scale=0.3 / np.sqrt(DIM), size=(n, DIM))
        item_vectors = self.centres[items] + noise
        item_vectors /= np.linalg.norm(item_vectors, axis=1, keepdims=True)
        liked = rng.random(n) < np.where(users == items, 0.8, 0.1)
        labels = ~liked if inverted else liked
        return [
            json.dumps(
                {
                    "label": int(labels[i]),
                    "ts": ts_ms if ts_ms is not None else 1_700_000_000_000 + start + i,
                    "id": f"ex-{start + i}",
                    "features": {
                        "user": self.centres[users[i]].tolist(),
                        "item": item_vectors[i].tolist(),
                        **{f: float(rng.random()) for f in DENSE_FEATURES},
                    },
                }
            ).encode()
            for i in range(n)
        ]


def trainer_config(stack: Any, base: str, model: str, batch: int, **params: Any) -> dict[str, Any]:
    """An online-training worker on ``model`` reading ``<base>-examples`` (Failover) and
    announcing on ``<base>-versions``; ``params`` besides the stack's model repository."""
    return {
        "pipeline": "it",
        "stage": "train",
        "stageType": "online-training",
        "pulsar": {"serviceUrl": stack.pulsar_url},
        "input": {
            "topic": f"{base}-examples",
            "subscription": "trainer",
            "subscriptionType": "Failover",
        },
        "outputs": [f"{base}-versions"],
        "batching": {"maxBatchSize": batch, "maxDelayMs": 10},
        "delivery": {"deadLetterTopic": f"{base}-dlq", "negativeAckDelayMs": 200},
        "state": {"topic": f"{base}-state"},
        "inference": {"tritonUrl": stack.triton_grpc, "modelName": model},
        "params": {"modelRepository": str(stack.model_repository), **params},
        "healthPort": 0,
        "startupTimeoutS": 60,
    }
