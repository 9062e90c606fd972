"""The consume -> micro-batch -> stage -> produce -> ack loop.

Concurrency model: one asyncio event loop plus the Pulsar client's own C++ threads; no locks in
our code. Every wait in the data path is I/O: Triton is awaited natively
(``tritonclient.grpc.aio``); Pulsar's batch receive runs in a thread and its send callbacks
wake the loop once per batch (see ``io.pulsar``); tokenizing and onnxruntime run in threads that
release the GIL. A single loop keeps the bookkeeping (which message still waits for which send)
simple and race-free and overlaps batches cheaply: while one batch is being inferred, the next
is received and earlier ones are being published and acked. A thread per batch would need locks
around the same state and gain nothing, since the Python part of a batch is small next to the
model call; per-message asyncio futures were measured to cost more CPU than the messages
themselves, hence the batch-shaped I/O.

Flow and bounds (memory stays flat under any backlog):

    batch receive (maxBatchSize / maxDelayMs) -> semaphore(maxInFlightBatches) -> batch tasks

The receiver queue of the consumer bounds prefetch; no new batch is received while all
in-flight slots are taken, so a slow model or broker pushes back on the topic. Batches are
inferred concurrently but publish in the order they were received (``Turn``), so per-key order
holds under Key_Shared and Failover except where a message is redelivered.

Delivery guarantees (at-least-once):
- a message is acked only after every output for it was persisted by the broker;
- malformed input (oversize, not JSON, schema) and items a stage rejects are published to the
  dead-letter topic with the reason in properties, and acked only after that publish succeeded;
- infrastructure failures (model backend unavailable after retries, broker send failure) ->
  negative ack, redelivered after ``negativeAckDelayMs``; while the backend is down no new
  batch is started, so an outage does not burn the redelivery budget of the whole backlog;
- a failure attributable to the message itself (the model rejects it, a stage bug) is retried
  through redelivery; on its last allowed delivery it is dead-lettered with the reason;
- the consumer's Pulsar DeadLetterPolicy backs this up for messages nacked too often.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from streamvane_worker.config import WorkerConfig
from streamvane_worker.inference.errors import (
    BackendOverloaded,
    BackendUnavailable,
    InferenceError,
)
from streamvane_worker.io.base import Outgoing, Received, Sink, Source
from streamvane_worker.io.errors import PublishRejected, PulsarError
from streamvane_worker.runtime.decode import Malformed, decode, encode
from streamvane_worker.runtime.metrics import Metrics
from streamvane_worker.runtime.trace import TRACEPARENT, child_traceparent
from streamvane_worker.stages import input_model
from streamvane_worker.stages.base import Stage
from streamvane_worker.stages.message import Message

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
RECEIVE_RETRY_S = 1.0


@dataclass(frozen=True)
class Failure:
    """Why a message was not processed: dead-letter it, or nack it for redelivery."""

    reason: str
    detail: str
    transient: bool


@dataclass(frozen=True)
class Turn:
    """Publishing order: a batch issues its sends only after the batch received before it did,
    so results leave in the order their inputs arrived (per-key order under Key_Shared and
    Failover) although batches are inferred concurrently."""

    previous: asyncio.Event
    mine: asyncio.Event


@dataclass
class Outcome:
    """What to do with each message of a batch, filled in by the stage step."""

    publish: list[tuple[Received, Message]]
    dead_letter: list[tuple[Received, Failure]]
    nack: list[tuple[Received, Failure]]


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        source: Source,
        sinks: Sequence[Sink],
        dead_letter: Sink,
        stage: Stage[Any],
        metrics: Metrics,
        backend_ready: Callable[[], Awaitable[bool]],
    ) -> None:
        self._config = config
        self._source = source
        self._sinks = sinks
        self._dead_letter = dead_letter
        self._stage = stage
        self._input_model = input_model(config.stage_type)
        self._backend_ready = backend_ready
        labels = {"pipeline": config.pipeline, "stage": config.stage}
        self._m = metrics
        self._in = metrics.messages_in.labels(**labels)
        self._out = metrics.messages_out.labels(**labels)
        self._failed = metrics.messages_failed
        self._dead = metrics.messages_dead_lettered
        self._batch_size = metrics.batch_size.labels(**labels)
        self._latency = metrics.end_to_end_latency.labels(**labels)
        self._in_flight = metrics.in_flight.labels(**labels)
        self._labels = labels
        self._slots = asyncio.Semaphore(config.batching.max_in_flight_batches)
        self._stopping = asyncio.Event()
        self._backend_up = asyncio.Event()
        self._batches: set[asyncio.Task[None]] = set()
        self._last_issued = asyncio.Event()
        self._last_issued.set()
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
        readiness = asyncio.create_task(self._readiness_loop(), name="readiness")
        try:
            while not self._stopping.is_set():
                batch = await self._receive()
                if batch:
                    await self._dispatch(batch)
            await asyncio.gather(*self._batches, return_exceptions=True)
        finally:
            readiness.cancel()
            await self._close()
            log.info("drain_done")

    async def _receive(self) -> list[Received]:
        try:
            batch = await self._source.receive_batch()
        except PulsarError as e:
            log.warning("receive_failed", error=str(e))
            await asyncio.sleep(RECEIVE_RETRY_S)
            return []
        self._in.inc(len(batch))
        self._in_flight.inc(len(batch))
        return batch

    async def _dispatch(self, batch: list[Received]) -> None:
        """Start a batch once a slot is free and the backend serves (backpressure)."""
        await self._slots.acquire()
        if not self._backend_up.is_set() and not self._stopping.is_set():
            log.warning("backend_down_waiting", batch=len(batch))
            await _first(self._backend_up.wait(), self._stopping.wait())
        turn = Turn(previous=self._last_issued, mine=asyncio.Event())
        self._last_issued = turn.mine
        task = asyncio.create_task(self._process(batch, turn))
        self._batches.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("batch_crashed", error=repr(task.exception()))

    async def _process(self, batch: list[Received], turn: Turn) -> None:
        try:
            await self._process_in_turn(batch, turn)
        finally:
            turn.mine.set()  # never hold up later batches, whatever happened to this one

    async def _process_in_turn(self, batch: list[Received], turn: Turn) -> None:
        self._batch_size.observe(len(batch))
        outcome = Outcome(publish=[], dead_letter=[], nack=[])
        decoded: list[tuple[Received, Message]] = []
        for message in batch:
            item = decode(
                message.payload, self._config.delivery.max_message_bytes, self._input_model
            )
            if isinstance(item, Malformed):
                outcome.dead_letter.append((message, Failure(item.reason, item.detail, False)))
            elif message.redelivery_count >= self._config.delivery.max_redeliveries:
                detail = f"delivered {message.redelivery_count + 1} times"
                outcome.dead_letter.append((message, Failure("max-redeliveries", detail, False)))
            else:
                decoded.append((message, item))
        if decoded and self._stopping.is_set() and not self._backend_up.is_set():
            failure = Failure("draining", "backend down while draining", transient=True)
            outcome.nack.extend((m, failure) for m, _ in decoded)
        elif decoded:
            await self._run_stage(decoded, outcome)
        await turn.previous.wait()
        rejected = await self._publish(outcome.publish, outcome.nack, issued=turn.mine)
        outcome.dead_letter.extend(rejected)
        await self._send_dead_letters(outcome.dead_letter)
        self._nack(outcome.nack)

    async def _run_stage(self, decoded: list[tuple[Received, Message]], outcome: Outcome) -> None:
        try:
            result = await self._stage.process([item for _, item in decoded])
        except BackendUnavailable as e:
            self._backend_up.clear()
            reason = (
                "backend-overloaded" if isinstance(e, BackendOverloaded) else "backend-unavailable"
            )
            failure = Failure(reason, str(e), transient=True)
            outcome.nack.extend((m, failure) for m, _ in decoded)
            return
        except Exception as e:  # noqa: BLE001 - a stage bug or model rejection must not stop the worker
            if len(decoded) > 1:
                # Isolate the message(s) at fault: rerun one by one, the rest go through.
                log.warning("batch_failed_isolating", size=len(decoded), error=str(e))
                await asyncio.gather(*(self._run_stage([pair], outcome) for pair in decoded))
                return
            message = decoded[0][0]
            reason = "inference-failed" if isinstance(e, InferenceError) else "stage-error"
            log.warning("message_failed", message_id=message.message_id, error=str(e))
            failure = Failure(reason, str(e)[:500], transient=False)
            last = message.redelivery_count + 1 >= self._config.delivery.max_redeliveries
            (outcome.dead_letter if last else outcome.nack).append((message, failure))
            return
        for error in result.errors:
            failure = Failure(error.reason, error.detail, transient=False)
            outcome.dead_letter.append((decoded[error.index][0], failure))
        outcome.publish.extend((decoded[i][0], item) for i, item in result.outputs.items())

    async def _publish(
        self,
        outputs: list[tuple[Received, Message]],
        nack: list[tuple[Received, Failure]],
        issued: asyncio.Event,
    ) -> list[tuple[Received, Failure]]:
        """Publish to every output topic and ack what all of them persisted; set ``issued``
        once the sends are handed to the broker client.

        Messages a send failed for transiently are appended to ``nack``; those the broker
        rejected are returned, to be dead-lettered."""
        if not outputs:
            return []
        outgoing = [self._outgoing(message, item) for message, item in outputs]
        sends = [asyncio.ensure_future(sink.send_batch(outgoing)) for sink in self._sinks]
        await asyncio.sleep(0)  # each send_batch issues all its sends in its first step
        issued.set()
        per_sink = await asyncio.gather(*sends)
        done: list[Received] = []
        rejected: list[tuple[Received, Failure]] = []
        for index, (message, _) in enumerate(outputs):
            errors = [results[index] for results in per_sink if results[index] is not None]
            if not errors:
                done.append(message)
            elif any(isinstance(e, PublishRejected) for e in errors):
                rejected.append((message, Failure("publish-rejected", str(errors[0]), False)))
            else:
                nack.append((message, Failure("publish-failed", str(errors[0]), True)))
        self._ack(done)
        self._out.inc(len(done))
        now_ms = time.time() * 1000
        for message in done:
            if message.publish_time_ms:
                self._latency.observe(max(now_ms - message.publish_time_ms, 0.0) / 1000)
        return rejected

    def _outgoing(self, message: Received, item: Message) -> Outgoing:
        properties = {
            TRACEPARENT: child_traceparent(message.properties.get(TRACEPARENT)),
            ITEM_ID_PROPERTY: item.routing_key(),
            STAGE_PROPERTY: self._config.stage,
            SOURCE_TOPIC_PROPERTY: message.topic,
            SOURCE_ID_PROPERTY: message.message_id,
        }
        return Outgoing(encode(item), properties, message.key or item.routing_key())

    async def _send_dead_letters(self, failed: list[tuple[Received, Failure]]) -> None:
        """Publish to the dead-letter topic with the reason; ack what was persisted."""
        if not failed:
            return
        outgoing = [
            Outgoing(message.payload, self._dead_letter_properties(message, f), message.key)
            for message, f in failed
        ]
        results = await self._dead_letter.send_batch(outgoing)
        done = []
        for (message, failure), error in zip(failed, results, strict=True):
            if error is not None:
                log.error("dead_letter_failed", message_id=message.message_id, error=str(error))
                self._nack([(message, Failure("dead-letter-failed", str(error), True))])
                continue
            log.warning(
                "message_dead_lettered",
                message_id=message.message_id,
                reason=failure.reason,
                detail=failure.detail[:200],
                traceparent=message.properties.get(TRACEPARENT),
            )
            self._dead.labels(**self._labels, reason=failure.reason).inc()
            done.append(message)
        self._ack(done)

    def _dead_letter_properties(self, message: Received, failure: Failure) -> dict[str, str]:
        return {
            **message.properties,
            ERROR_PROPERTY: failure.reason,
            ERROR_DETAIL_PROPERTY: failure.detail[:1000],
            STAGE_PROPERTY: self._config.stage,
            PIPELINE_PROPERTY: self._config.pipeline,
            SOURCE_TOPIC_PROPERTY: message.topic,
            SOURCE_ID_PROPERTY: message.message_id,
            REDELIVERY_PROPERTY: str(message.redelivery_count),
        }

    def _nack(self, failed: list[tuple[Received, Failure]]) -> None:
        for message, failure in failed:
            self._failed.labels(**self._labels, reason=failure.reason).inc()
            log.warning(
                "message_nacked",
                message_id=message.message_id,
                reason=failure.reason,
                redelivery_count=message.redelivery_count,
            )
        self._source.nack([message for message, _ in failed])
        self._in_flight.dec(len(failed))

    def _ack(self, messages: list[Received]) -> None:
        self._source.ack(messages)
        self._in_flight.dec(len(messages))

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
