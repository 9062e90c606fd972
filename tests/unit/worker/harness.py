"""Builds a Worker over the broker and model fakes for runtime unit tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamvane_worker.config import StageType, WorkerConfig
from streamvane_worker.inference.testing import FakeBackend, fake_embedder
from streamvane_worker.io.testing import Event, FakeAttemptLog, FakeSink, FakeSource
from streamvane_worker.runtime.metrics import Metrics, create_metrics
from streamvane_worker.runtime.worker import Worker
from streamvane_worker.stages import StageContext, create_stage

DLQ = "persistent://t/n/dlq"


def make_config(
    stage_type: StageType = StageType.TEXT_EMBEDDING,
    outputs: tuple[str, ...] = ("persistent://t/n/out",),
    **sections: dict[str, Any],
) -> WorkerConfig:
    return WorkerConfig.model_validate(
        {
            "pipeline": "p",
            "stage": "s",
            "stageType": stage_type,
            "input": {"topic": "persistent://t/n/in", "subscription": "sub"},
            "outputs": list(outputs),
            "delivery": {"deadLetterTopic": DLQ, **sections.pop("delivery", {})},
            "inference": {},
            **sections,
        }
    )


@dataclass
class Harness:
    worker: Worker
    source: FakeSource
    sinks: list[FakeSink]
    dead_letter: FakeSink
    retry: FakeSink
    backend: FakeBackend
    metrics: Metrics
    events: list[Event]
    attempts: FakeAttemptLog
    task: asyncio.Task[None]

    async def wait_settled(self, count: int, timeout: float = 5.0) -> None:
        await wait_for(lambda: len(self.source.acked) + len(self.source.nacked) >= count, timeout)

    async def stop(self) -> None:
        self.worker.stop()
        await asyncio.wait_for(self.task, 5)

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(
            f"streamvane_worker_{name}", {"pipeline": "p", "stage": "s", **labels}
        )
        return value or 0.0


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.005)


async def start(
    config: WorkerConfig | None = None,
    backend: FakeBackend | None = None,
    sink_delay_s: float = 0.0,
    attempts: FakeAttemptLog | None = None,
) -> Harness:
    config = config or make_config()
    backend = backend or FakeBackend()
    events: list[Event] = []
    source = FakeSource(events, config.batching.max_batch_size, config.batching.max_delay_ms / 1000)
    sinks = [FakeSink(t, events, delay_s=sink_delay_s) for t in config.outputs]
    dead_letter = FakeSink(DLQ, events)
    retry = FakeSink(config.input.topic, events)
    embedder = await fake_embedder(backend)
    stage = await create_stage(
        StageContext(config.stage, config.stage_type, config.params, embedder)
    )
    metrics = create_metrics("p", "s")
    attempts = attempts or FakeAttemptLog()
    worker = Worker(
        config, source, sinks, dead_letter, retry, stage, metrics, backend.ready, attempts
    )
    task = asyncio.create_task(worker.run())
    return Harness(
        worker, source, sinks, dead_letter, retry, backend, metrics, events, attempts, task
    )


def item(i: int, **fields: Any) -> dict[str, Any]:
    return {"id": f"item-{i}", "title": f"title {i}", "description": "a video about cats", **fields}
