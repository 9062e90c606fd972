"""The consume -> micro-batch -> stage -> produce -> ack loop.

Concurrency model: one asyncio event loop, no locks. Every wait in the data path is I/O that has
a native async API (pulsar-client's ``pulsar.asyncio``, ``tritonclient.grpc.aio``); the CPU work
of a batch (tokenizing, onnxruntime) runs in threads that release the GIL. A single loop keeps
the per-message bookkeeping (in-flight count, ack after all sends) simple and race-free, and
overlaps batches cheaply: while one batch is being inferred, the next is collected and earlier
ones are being published and acked. Threads would need locks around the same state and gain
nothing, since the GIL-holding Python part of a batch is small next to the model call.

Flow and bounds (memory stays flat under any backlog):

    receive task -> queue (maxBatchSize) -> collector -> semaphore(maxInFlightBatches) -> batch tasks

Delivery guarantees (at-least-once):
- a message is acked only after every output for it was persisted by the broker;
- malformed input (oversize, not JSON, schema) and items a stage rejects are published to the
  dead-letter topic with the reason in properties, and acked only after that publish succeeded;
- infrastructure failures (model backend unavailable after retries, broker send failure) ->
  negative ack, redelivered after ``negativeAckDelayMs``; while the backend is down no new
  batch is started, so an outage does not burn the redelivery budget of the whole backlog;
- a failure attributable to the message itself (the model rejects it) is retried through
  redelivery; on its last allowed delivery it is dead-lettered with the reason;
- the consumer's Pulsar DeadLetterPolicy backs this up for messages nacked too often.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from streamvane_worker.config import WorkerConfig
from streamvane_worker.inference.errors import BackendUnavailable, InferenceError
from streamvane_worker.io.base import Received, Sink, Source
from streamvane_worker.io.errors import PublishRejected, PulsarError
from streamvane_worker.runtime.decode import Malformed, decode, encode
from streamvane_worker.runtime.metrics import Metrics
from streamvane_worker.runtime.trace import TRACEPARENT, child_traceparent, trace_id
from streamvane_worker.stages.base import Stage
from streamvane_worker.stages.item import ContentItem

log = structlog.get_logger(__name__)

ERROR_PROPERTY = "streamvane-error"
ERROR_DETAIL_PROPERTY = "streamvane-error-detail"
STAGE_PROPERTY = "streamvane-stage"
PIPELINE_PROPERTY = "streamvane-pipeline"
SOURCE_TOPIC_PROPERTY = "streamvane-source-topic"
SOURCE_ID_PROPERTY = "streamvane-source-message-id"
REDELIVERY_PROPERTY = "streamvane-redelivery-count"
ITEM_ID_PROPERTY = "streamvane-item-id"

READINESS_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Failure:
    """Why a message was not processed: dead-letter it, or nack it for redelivery."""

    reason: str
    detail: str
    transient: bool


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        source: Source,
        sinks: Sequence[Sink],
        dead_letter: Sink,
        stage: Stage,
        metrics: Metrics,
        backend_ready: Callable[[], Awaitable[bool]],
    ) -> None:
        self._config = config
        self._source = source
        self._sinks = sinks
        self._dead_letter = dead_letter
        self._stage = stage
        self._backend_ready = backend_ready
        self._labels = {"pipeline": config.pipeline, "stage": config.stage}
        self._m = metrics
        self._queue: asyncio.Queue[Received] = asyncio.Queue(config.batching.max_batch_size)
        self._slots = asyncio.Semaphore(config.batching.max_in_flight_batches)
        self._stopping = asyncio.Event()
        self._backend_up = asyncio.Event()
        self._batches: set[asyncio.Task[None]] = set()
        self._held: list[Received] = []
        self.ready = False
        """Read by the /readyz thread: Pulsar connected, backend serving, not draining."""

    def stop(self) -> None:
        """Begin draining (safe to call from a signal handler on the loop)."""
        if not self._stopping.is_set():
            log.info("drain_started", in_flight_batches=len(self._batches))
            self._stopping.set()
            self.ready = False

    async def run(self) -> None:
        """Process until ``stop()``, then drain: finish and ack what was received, close."""
        await self._refresh_readiness()
        receiver = asyncio.create_task(self._receive_loop(), name="receive")
        readiness = asyncio.create_task(self._readiness_loop(), name="readiness")
        try:
            while not self._stopping.is_set():
                batch = await self._collect()
                if batch:
                    await self._dispatch(batch)
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
            # Received but not yet batched: finish them too rather than wait for redelivery.
            leftover = [*self._take_available([], limit=self._queue.qsize()), *self._held]
            size = self._config.batching.max_batch_size
            for start in range(0, len(leftover), size):
                await self._dispatch(leftover[start : start + size])
            await asyncio.gather(*self._batches, return_exceptions=True)
            readiness.cancel()
            await self._close()
            log.info("drain_done")

    async def _receive_loop(self) -> None:
        while True:
            try:
                message = await self._source.receive()
            except PulsarError as e:
                log.warning("receive_failed", error=str(e))
                await asyncio.sleep(1.0)
                continue
            self._m.messages_in.labels(**self._labels).inc()
            self._m.in_flight.labels(**self._labels).inc()
            self._held = [message]  # not lost if draining cancels the put
            await self._queue.put(message)
            self._held = []

    async def _collect(self) -> list[Received]:
        """One micro-batch: waits for a first message, then up to ``maxDelayMs`` for more."""
        first = await self._next_or_stop()
        if first is None:
            return []
        batch = self._take_available([first])
        size = self._config.batching.max_batch_size
        deadline = time.monotonic() + self._config.batching.max_delay_ms / 1000
        while len(batch) < size and (remaining := deadline - time.monotonic()) > 0:
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
            self._take_available(batch)
        return batch

    def _take_available(self, batch: list[Received], limit: int | None = None) -> list[Received]:
        limit = self._config.batching.max_batch_size if limit is None else limit
        while len(batch) < limit and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _next_or_stop(self) -> Received | None:
        get = asyncio.ensure_future(self._queue.get())
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if get.done():
            return get.result()
        get.cancel()
        return None

    async def _dispatch(self, batch: list[Received]) -> None:
        """Start a batch once a slot is free and the backend serves (backpressure)."""
        await self._slots.acquire()
        if not self._backend_up.is_set() and not self._stopping.is_set():
            log.warning("backend_down_waiting", batch=len(batch))
            await _first(self._backend_up.wait(), self._stopping.wait())
        task = asyncio.create_task(self._process(batch))
        self._batches.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("batch_crashed", error=repr(task.exception()))

    async def _process(self, batch: list[Received]) -> None:
        self._m.batch_size.labels(**self._labels).observe(len(batch))
        max_redeliveries = self._config.delivery.max_redeliveries
        decoded: list[tuple[Received, ContentItem]] = []
        settle: list[Awaitable[None]] = []
        for message in batch:
            outcome = decode(message.payload, self._config.delivery.max_message_bytes)
            if isinstance(outcome, Malformed):
                failure = Failure(outcome.reason, outcome.detail, transient=False)
                settle.append(self._dead_letter_message(message, failure))
            elif message.redelivery_count >= max_redeliveries:
                detail = f"delivered {message.redelivery_count + 1} times"
                failure = Failure("max-redeliveries", detail, transient=False)
                settle.append(self._dead_letter_message(message, failure))
            else:
                decoded.append((message, outcome))
        if self._stopping.is_set() and not self._backend_up.is_set():
            failure = Failure("draining", "backend down while draining", transient=True)
            settle.extend(self._fail(m, failure) for m, _ in decoded)
        elif decoded:
            settle.extend(await self._run_stage(decoded))
        await asyncio.gather(*settle)

    async def _run_stage(
        self, decoded: list[tuple[Received, ContentItem]]
    ) -> list[Awaitable[None]]:
        """Awaitables that settle (ack / nack / dead-letter) every message of ``decoded``."""
        items = [item for _, item in decoded]
        try:
            result = await self._stage.process(items)
        except BackendUnavailable as e:
            self._backend_up.clear()
            failure = Failure("backend-unavailable", str(e), transient=True)
            return [self._fail(m, failure) for m, _ in decoded]
        except Exception as e:  # noqa: BLE001 - a stage bug or model rejection must not stop the worker
            if len(decoded) > 1:
                # Isolate the message(s) at fault: rerun one by one, the rest go through.
                log.warning("batch_failed_isolating", size=len(decoded), error=str(e))
                singles = await asyncio.gather(*(self._run_stage([pair]) for pair in decoded))
                return [settle for group in singles for settle in group]
            message = decoded[0][0]
            reason = "inference-failed" if isinstance(e, InferenceError) else "stage-error"
            log.warning("message_failed", message_id=message.message_id, error=str(e))
            return [self._fail(message, Failure(reason, str(e)[:500], transient=False))]
        settles: list[Awaitable[None]] = []
        for error in result.errors:
            failure = Failure(error.reason, error.detail, transient=False)
            settles.append(self._dead_letter_message(decoded[error.index][0], failure))
        for index, item in result.outputs.items():
            settles.append(self._publish_and_ack(decoded[index][0], item))
        return settles

    async def _publish_and_ack(self, message: Received, item: ContentItem) -> None:
        traceparent = child_traceparent(message.properties.get(TRACEPARENT))
        properties = {
            TRACEPARENT: traceparent,
            ITEM_ID_PROPERTY: item.id,
            STAGE_PROPERTY: self._config.stage,
            SOURCE_TOPIC_PROPERTY: message.topic,
            SOURCE_ID_PROPERTY: message.message_id,
        }
        payload = encode(item)
        key = message.key or item.id
        try:
            await asyncio.gather(*(sink.send(payload, properties, key) for sink in self._sinks))
        except PublishRejected as e:
            await self._dead_letter_message(message, Failure("publish-rejected", str(e), False))
            return
        except PulsarError as e:
            await self._fail(message, Failure("publish-failed", str(e), transient=True))
            return
        await self._ack(message)
        self._m.messages_out.labels(**self._labels).inc()
        if message.publish_time_ms:
            latency = time.time() - message.publish_time_ms / 1000
            self._m.end_to_end_latency.labels(**self._labels).observe(max(latency, 0.0))

    async def _fail(self, message: Received, failure: Failure) -> None:
        """Nack for redelivery, or dead-letter if this was the last allowed delivery."""
        last = message.redelivery_count + 1 >= self._config.delivery.max_redeliveries
        if not failure.transient and last:
            await self._dead_letter_message(message, failure)
            return
        self._m.messages_failed.labels(**self._labels, reason=failure.reason).inc()
        log.warning(
            "message_nacked",
            message_id=message.message_id,
            reason=failure.reason,
            redelivery_count=message.redelivery_count,
        )
        await self._settle(self._source.nack(message))

    async def _dead_letter_message(self, message: Received, failure: Failure) -> None:
        properties = {
            **message.properties,
            ERROR_PROPERTY: failure.reason,
            ERROR_DETAIL_PROPERTY: failure.detail[:1000],
            STAGE_PROPERTY: self._config.stage,
            PIPELINE_PROPERTY: self._config.pipeline,
            SOURCE_TOPIC_PROPERTY: message.topic,
            SOURCE_ID_PROPERTY: message.message_id,
            REDELIVERY_PROPERTY: str(message.redelivery_count),
        }
        try:
            await self._dead_letter.send(message.payload, properties, message.key)
        except PulsarError as e:
            log.error("dead_letter_failed", message_id=message.message_id, error=str(e))
            self._m.messages_failed.labels(**self._labels, reason="dead-letter-failed").inc()
            await self._settle(self._source.nack(message))
            return
        log.warning(
            "message_dead_lettered",
            message_id=message.message_id,
            reason=failure.reason,
            detail=failure.detail[:200],
            trace_id=trace_id(child_traceparent(message.properties.get(TRACEPARENT))),
        )
        self._m.messages_dead_lettered.labels(**self._labels, reason=failure.reason).inc()
        await self._ack(message)

    async def _ack(self, message: Received) -> None:
        await self._settle(self._source.ack(message))

    async def _settle(self, operation: Awaitable[None]) -> None:
        """Ack or nack; if the broker fails it, the message is redelivered anyway."""
        try:
            await operation
        except PulsarError as e:
            log.warning("settle_failed", error=str(e))
        finally:
            self._m.in_flight.labels(**self._labels).dec()

    async def _readiness_loop(self) -> None:
        while True:
            await asyncio.sleep(READINESS_INTERVAL_S)
            await self._refresh_readiness()

    async def _refresh_readiness(self) -> None:
        backend = await self._backend_ready()
        pulsar = self._source.connected() and all(
            s.connected() for s in [*self._sinks, self._dead_letter]
        )
        if backend and not self._backend_up.is_set():
            log.info("backend_up")
        if not backend and self._backend_up.is_set():
            log.warning("backend_down")
        (self._backend_up.set if backend else self._backend_up.clear)()
        ready = backend and pulsar and not self._stopping.is_set()
        if ready != self.ready:
            log.info("readiness_changed", ready=ready, backend=backend, pulsar=pulsar)
        self.ready = ready

    async def _close(self) -> None:
        closables: list[Sink | Source] = [*self._sinks, self._dead_letter, self._source]
        for closable in closables:
            try:
                await closable.close()
            except PulsarError as e:
                log.warning("close_failed", error=str(e))


async def _first(*waits: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
