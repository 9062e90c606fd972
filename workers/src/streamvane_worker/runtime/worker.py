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
    batch task: stage under AdaptiveLimit (AIMD, <= maxInFlightBatches concurrent model calls)

The receiver queue of the consumer bounds prefetch; no new batch is received while all
in-flight slots are taken, so a slow model or broker pushes back on the topic. Batches are
inferred concurrently but publish in the order they were received (``Turn``), so per-key order
holds under Key_Shared and Failover except where a message is redelivered.

Delivery guarantees (at-least-once):
- a message is acked only after every output for it was persisted by the broker;
- any payload is data: malformed input (oversize, not JSON, too deep, huge numbers, lone
  surrogates, schema) and items a stage rejects or cannot encode are published to the
  dead-letter topic with the reason in properties, and acked only after that publish succeeded;
- a batch that fails for any unexpected reason still settles each of its messages (nack);
- infrastructure failures (model backend unavailable or overloaded, broker send failure) are
  retried in place with backoff, never counted against the message; while the backend is down
  no new batch of a stage that needs the model is started; when draining, what is still held
  is handed back unsettled (the broker redelivers it without counting);
- a failure attributable to the message itself (the model rejects it, a stage bug) is retried
  later: re-published to the input topic with its delivery count, the original acked (a nack
  would redeliver its whole producer batch); on its last allowed delivery it is dead-lettered
  with the reason;
- each batch is journaled before work starts (``AttemptLog``); a message whose earlier attempts
  ended with the worker dying ``maxCrashes`` times is quarantined as ``crash-loop``;
- the consumer's ack timeout backs this up (no Pulsar DeadLetterPolicy: it counts with the
  broker's redelivery count, which also counts what a dying worker held or had prefetched).

Effectively-once (``delivery.guarantee: EffectivelyOnce``, see ``io.sequence``): each output
carries the sequence id of its input position and is written by that partition's named
producer, so the broker drops what a replay writes again. That holds only while outputs
leave in input order and no output is skipped for one written after it, so in this mode:
outputs of a batch are sent sorted by position; after a crash a batch is handled in position
order; a send failure is not retried in place; and anything that would leave a gap (a
message released unsettled, or nacked) stops the worker without writing any later output,
so that the broker redelivers from the gap, in order, to the next run (a "replay").
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import structlog

from streamvane_worker.config import (
    STAGES_NEEDING_MODEL_PER_ITEM,
    DeliveryGuarantee,
    WorkerConfig,
)
from streamvane_worker.inference.errors import (
    BackendOverloaded,
    BackendUnavailable,
    InferenceError,
)
from streamvane_worker.io.base import AttemptLog, Outgoing, Received, Sink, Source
from streamvane_worker.io.errors import PublishRejected, PulsarError
from streamvane_worker.io.sequence import PositionOutOfRange, sequence_id
from streamvane_worker.runtime.concurrency import AdaptiveLimit
from streamvane_worker.runtime.decode import Limits, Malformed, decode, encode
from streamvane_worker.runtime.metrics import Metrics
from streamvane_worker.runtime.trace import TRACEPARENT, child_traceparent
from streamvane_worker.stages import input_model, side_input_models
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
CRASHES_PROPERTY = "streamvane-crash-count"
DELIVERIES_PROPERTY = "streamvane-deliveries"
ITEM_ID_PROPERTY = "streamvane-item-id"

READINESS_INTERVAL_S = 1.0
RECEIVE_RETRY_S = 1.0
HEARTBEAT_STALE_S = 30.0
"""The readiness loop turns every second; a loop that has not for this long is wedged."""
RETRY_BASE_S = 0.2
RETRY_MAX_S = 5.0
PARTITION_SUFFIX = re.compile(r"-partition-\d+$")

T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    """Why a message was not processed: dead-letter it, or nack it for redelivery."""

    reason: str
    detail: str
    properties: dict[str, str] = field(default_factory=dict)
    """Extra dead-letter properties (``streamvane-crash-count`` for crash-loop)."""


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

    publish: list[tuple[Received, Message]] = field(default_factory=list)
    dead_letter: list[tuple[Received, Failure]] = field(default_factory=list)
    nack: list[tuple[Received, Failure]] = field(default_factory=list)
    consumed: list[Received] = field(default_factory=list)
    """Processed without an output: acked once the batch's outputs are persisted."""
    release: list[Received] = field(default_factory=list)
    """Held back by an infrastructure failure while draining: left unsettled, so the broker
    redelivers them (to another consumer) without counting a redelivery."""


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        source: Source,
        sinks: Sequence[Sink],
        dead_letter: Sink,
        retry: Sink | Mapping[str, Sink],
        stage: Stage[Any],
        metrics: Metrics,
        backend_ready: Callable[[], Awaitable[bool]],
        attempts: AttemptLog,
    ) -> None:
        self._config = config
        delivery = config.delivery
        self._limits = Limits(
            delivery.max_message_bytes, delivery.max_nesting_depth, delivery.max_number_digits
        )
        self._source = source
        self._sinks = sinks
        self._dead_letter = dead_letter
        self._retry = retry if isinstance(retry, Mapping) else {config.input.topic: retry}
        """A producer on each input topic, for messages retried later (``_retry_later``)."""
        self._stage = stage
        self._input_model = input_model(config.stage_type)
        side_models = side_input_models(config.stage_type)
        self._models: dict[str, type[Message]] = {
            topic: side_models[param] for param, topic in config.side_inputs().items()
        }
        """Side input topic -> its message model (anything else is the input model)."""
        self._attempts = attempts
        self._backend_ready = backend_ready
        self._needs_backend = config.stage_type in STAGES_NEEDING_MODEL_PER_ITEM
        self._effectively_once = delivery.guarantee is DeliveryGuarantee.EFFECTIVELY_ONCE
        self._gap = False
        """Effectively-once: a message was left without its outputs; no later output may be
        written in this run."""
        labels = {"pipeline": config.pipeline, "stage": config.stage}
        self._in = metrics.messages_in.labels(**labels)
        self._out = metrics.messages_out.labels(**labels)
        self._failed = metrics.messages_failed
        self._dead = metrics.messages_dead_lettered
        self._retries = metrics.retries
        self._redeliveries = metrics.redeliveries.labels(**labels)
        self._quarantined = metrics.quarantined.labels(**labels)
        self._batch_size = metrics.batch_size.labels(**labels)
        self._latency = metrics.end_to_end_latency.labels(**labels)
        self._in_flight = metrics.in_flight.labels(**labels)
        self._limit_gauge = metrics.in_flight_limit.labels(**labels)
        metrics.oldest_in_flight_age.labels(**labels).set_function(self.oldest_in_flight_age)
        self._labels = labels
        self._slots = asyncio.Semaphore(config.batching.max_in_flight_batches)
        self._limit = AdaptiveLimit(config.batching.max_in_flight_batches)
        self._limit_gauge.set(self._limit.limit)
        self._stopping = asyncio.Event()
        self._backend_up = asyncio.Event()
        self._batches: set[asyncio.Task[None]] = set()
        self._suspect = asyncio.Lock()
        self._last_issued = asyncio.Event()
        self._last_issued.set()
        self._received_at: dict[int, float] = {}
        """id(message) -> monotonic receive time, for every message not yet settled; in
        receive order, so the first is the oldest."""
        self._oldest_since: float | None = None
        self._heartbeat = time.monotonic()
        self._dependencies_up = True
        self.ready = False
        """Read by the /readyz thread: Pulsar connected, backend serving, not draining."""

    def stop(self) -> None:
        """Begin draining (safe to call from a signal handler on the loop)."""
        if not self._stopping.is_set():
            log.info("drain_started", in_flight_batches=len(self._batches))
            self._stopping.set()
            self.ready = False

    def oldest_in_flight_age(self) -> float:
        """Seconds the oldest unsettled message has been in flight (read from any thread)."""
        since = self._oldest_since
        return 0.0 if since is None else max(time.monotonic() - since, 0.0)

    def live(self) -> bool:
        """For /healthz: the loop runs, and no message is stuck in flight for longer than
        ``maxInFlightAgeS`` while its dependencies are up (restarting cannot fix an outage)."""
        bound = self._config.delivery.max_in_flight_age_s
        if time.monotonic() - self._heartbeat > max(bound, HEARTBEAT_STALE_S):
            return False
        return not self._dependencies_up or self.oldest_in_flight_age() <= bound

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
        except Exception as e:  # noqa: BLE001 - the broker client must not stop the loop
            log.warning("receive_failed", error=str(e))
            await asyncio.sleep(RECEIVE_RETRY_S)
            return []
        now = time.monotonic()
        for message in batch:
            self._received_at[id(message)] = now
        self._note_oldest()
        self._in.inc(len(batch))
        self._in_flight.inc(len(batch))
        return batch

    async def _dispatch(self, batch: list[Received]) -> None:
        """Start a batch once a slot is free (and, for a stage that calls the model for every
        item, once the backend serves): backpressure."""
        await self._slots.acquire()
        if self._needs_backend and not self._backend_up.is_set() and not self._stopping.is_set():
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

    async def _process(self, batch: list[Received], turn: Turn) -> None:
        try:
            await self._process_in_turn(batch, turn)
        except Exception as e:  # noqa: BLE001 - whatever happened, settle every message
            unsettled = [m for m in batch if id(m) in self._received_at]
            log.error("batch_failed", error=repr(e)[:500], unsettled=len(unsettled))
            failure = Failure("batch-failed", repr(e)[:500])
            try:
                await self._retry_later([(m, failure) for m in unsettled])
            except Exception:  # noqa: BLE001 - last resort: the broker redelivers on nack
                self._nack(unsettled)
            self._attempts.end(batch)
        finally:
            turn.mine.set()  # never hold up later batches, whatever happened to this one

    async def _process_in_turn(self, batch: list[Received], turn: Turn) -> None:
        """Journal the batch, then work on the messages no worker died holding; those that
        were in flight when a worker died (suspects) come after, one at a time across all
        batches, each settled before the next starts, so a message that kills the worker
        counts a crash against itself and not against other suspects, and is quarantined
        after ``maxCrashes``."""
        self._batch_size.observe(len(batch))
        crashes = await self._retrying("attempt-log", lambda: self._attempts.begin(batch))
        if crashes is None:
            self._release(batch)
            self._attempts.end(batch)
            return
        fresh = [m for m, crashed in zip(batch, crashes, strict=True) if not crashed]
        suspects = [(m, c) for m, c in zip(batch, crashes, strict=True) if c]
        if suspects:
            # Their attempt as part of this batch is taken back; each gets one of its own.
            self._attempts.undo([m for m, _ in suspects])
            log.warning("suspects_isolated", count=len(suspects), max_crashes=max(crashes))
            if self._effectively_once:
                await self._handle_in_order(batch, crashes, turn)
                return
        await self._handle(fresh, [0] * len(fresh), turn)
        for message, crashed in suspects:
            self._redeliveries.inc()
            async with self._suspect:
                solo = Turn(previous=turn.mine, mine=asyncio.Event())
                await self._handle_suspect(message, crashed, solo)

    async def _handle_in_order(self, batch: list[Received], crashes: list[int], turn: Turn) -> None:
        """Effectively-once with suspects: outputs must still leave in input order, so once
        every earlier batch issued its sends, and holding the suspect lock throughout, the
        batch is handled in position order: runs of fresh messages together, each suspect
        alone (a suspect that kills the worker also counts a crash against the fresh
        messages after it; they are isolated as suspects on the next run)."""
        segments: list[list[tuple[Received, int]]] = []
        pairs = zip(batch, crashes, strict=True)
        for suspect, group in itertools.groupby(pairs, lambda pair: pair[1] > 0):
            run = list(group)
            segments.extend([[pair] for pair in run] if suspect else [run])
        await turn.previous.wait()
        async with self._suspect:
            previous = turn.previous
            for index, segment in enumerate(segments):
                mine = turn.mine if index == len(segments) - 1 else asyncio.Event()
                step = Turn(previous=previous, mine=mine)
                message, crashed = segment[0]
                if crashed:
                    self._redeliveries.inc()
                    await self._handle_suspect(message, crashed, step)
                else:
                    await self._handle([m for m, _ in segment], [0] * len(segment), step)
                previous = mine

    async def _handle_suspect(self, message: Received, crashed: int, solo: Turn) -> None:
        """One suspect, while no other suspect is in flight: if it kills the worker, no other
        suspect's count grows with it."""
        if crashed < self._config.delivery.max_crashes:
            begun = await self._retrying("attempt-log", partial(self._attempts.begin, [message]))
            if begun is None:
                self._release([message])
                return
        await self._handle([message], [crashed], solo)

    async def _handle(self, batch: list[Received], crashes: list[int], turn: Turn) -> None:
        """Decode, run the stage, publish, dead-letter, settle; then end the attempts."""
        outcome = Outcome()
        decoded: list[tuple[Received, Message]] = []
        delivery = self._config.delivery
        for message, crashed in zip(batch, crashes, strict=True):
            if message.redelivery_count and not crashed:
                self._redeliveries.inc()
            if crashed >= delivery.max_crashes:
                detail = f"{crashed} deliveries ended with the worker dying"
                count = {CRASHES_PROPERTY: str(crashed)}
                outcome.dead_letter.append((message, Failure("crash-loop", detail, count)))
                self._quarantined.inc()
                continue
            item = decode(message.payload, self._limits, self._model_of(message.topic))
            if isinstance(item, Malformed):
                outcome.dead_letter.append((message, Failure(item.reason, item.detail)))
            elif deliveries(message) >= delivery.max_redeliveries:
                detail = f"delivered {deliveries(message) + 1} times"
                outcome.dead_letter.append((message, Failure("max-redeliveries", detail)))
            else:
                decoded.append((message, item))
        if decoded:
            await self._run_stage(decoded, outcome)
        await turn.previous.wait()
        await self._publish(outcome, issued=turn.mine)
        turn.mine.set()
        await self._send_dead_letters(outcome.dead_letter, outcome)
        await self._retry_later(outcome.nack)
        self._release(outcome.release)
        self._attempts.end(batch)

    def _model_of(self, topic: str) -> type[Message]:
        """The message model of a record's topic (a partition is its topic's)."""
        if not self._models:
            return self._input_model
        return self._models.get(PARTITION_SUFFIX.sub("", topic), self._input_model)

    async def _run_stage(self, decoded: list[tuple[Received, Message]], outcome: Outcome) -> None:
        attempt = 0
        while True:
            try:
                async with self._limit.slot():
                    result = await self._stage.process([item for _, item in decoded])
                break
            except BackendUnavailable as e:
                overloaded = isinstance(e, BackendOverloaded)
                reason = "backend-overloaded" if overloaded else "backend-unavailable"
                if overloaded:
                    self._limit.overloaded()
                    self._limit_gauge.set(self._limit.limit)
                elif self._backend_up.is_set():
                    log.warning("backend_down", error=str(e)[:300])
                    self._backend_up.clear()
                self._retries.labels(**self._labels, reason=reason).inc()
                log.warning("stage_retry", reason=reason, attempt=attempt, error=str(e)[:300])
                if not await self._backoff(attempt, wait_for_backend=not overloaded):
                    outcome.release.extend(m for m, _ in decoded)
                    return
                attempt += 1
            except Exception as e:  # noqa: BLE001 - a stage bug or model rejection must not stop the worker
                await self._stage_failed(decoded, outcome, e)
                return
        self._limit.succeeded()
        self._limit_gauge.set(self._limit.limit)
        for error in result.errors:
            outcome.dead_letter.append(
                (decoded[error.index][0], Failure(error.reason, error.detail))
            )
        outcome.publish.extend((decoded[i][0], item) for i, item in result.outputs.items())
        # A stage may take a message without an output of its own (a join that keeps it in
        # its state, or wrote its outputs itself): it is acked with the batch's outputs.
        answered = set(result.outputs) | {error.index for error in result.errors}
        outcome.consumed.extend(m for i, (m, _) in enumerate(decoded) if i not in answered)

    async def _stage_failed(
        self, decoded: list[tuple[Received, Message]], outcome: Outcome, error: Exception
    ) -> None:
        if len(decoded) > 1:
            # Isolate the message(s) at fault: rerun one by one, the rest go through.
            log.warning("batch_failed_isolating", size=len(decoded), error=str(error)[:300])
            await asyncio.gather(*(self._run_stage([pair], outcome) for pair in decoded))
            return
        message = decoded[0][0]
        reason = "inference-failed" if isinstance(error, InferenceError) else "stage-error"
        log.warning("message_failed", message_id=message.message_id, error=str(error)[:300])
        failure = Failure(reason, f"{type(error).__name__}: {error}"[:500])
        last = deliveries(message) + 1 >= self._config.delivery.max_redeliveries
        (outcome.dead_letter if last else outcome.nack).append((message, failure))

    async def _retrying(self, reason: str, step: Callable[[], Awaitable[T]]) -> T | None:
        """Run an infrastructure step until it succeeds; None if draining interrupted it."""
        attempt = 0
        while True:
            try:
                return await step()
            except PulsarError as e:
                self._retries.labels(**self._labels, reason=reason).inc()
                log.warning("retry", reason=reason, attempt=attempt, error=str(e)[:300])
                if not await self._backoff(attempt):
                    return None
                attempt += 1

    async def _backoff(self, attempt: int, *, wait_for_backend: bool = False) -> bool:
        """Wait before retrying an infrastructure failure (exponential with jitter; cut short
        when the backend is seen serving again). False if the worker is draining."""
        if self._stopping.is_set():
            return False
        delay = min(RETRY_BASE_S * 2**attempt, RETRY_MAX_S) * random.uniform(0.5, 1.0)
        waits: list[Awaitable[object]] = [asyncio.sleep(delay), self._stopping.wait()]
        if wait_for_backend:
            # The readiness loop polls the backend every second and sets the event.
            await asyncio.sleep(min(delay, RETRY_BASE_S))
            waits.append(self._backend_up.wait())
        await _first(*waits)
        return not self._stopping.is_set()

    async def _publish(self, outcome: Outcome, issued: asyncio.Event) -> None:
        """Publish to every output topic and ack what all of them persisted; set ``issued``
        once the first sends are handed to the broker client. What the broker rejected is
        dead-lettered; transient send failures are retried in place (effectively-once: they
        leave a gap, see the module docstring)."""
        outgoing: list[Outgoing] = []
        messages: list[Received] = []
        publish = outcome.publish
        if self._effectively_once:
            if self._gap:
                outcome.release.extend([*(m for m, _ in publish), *outcome.consumed])
                issued.set()
                return
            publish = sorted(publish, key=lambda pair: _position_key(pair[0]))
        for message, item in publish:
            try:
                outgoing.append(self._outgoing(message, item))
            except PositionOutOfRange as e:
                outcome.dead_letter.append((message, Failure("position-out-of-range", str(e))))
                continue
            except Exception as e:  # noqa: BLE001 - one item that cannot be encoded is its own failure
                failure = Failure("encode-failed", f"{type(e).__name__}: {e}"[:500])
                outcome.dead_letter.append((message, failure))
                continue
            messages.append(message)
        results = await self._deliver(
            self._sinks, outgoing, issued, in_place=not self._effectively_once
        )
        done: list[Received] = []
        for message, error in zip(messages, results, strict=True):
            if error is None:
                done.append(message)
            elif isinstance(error, PublishRejected):
                outcome.dead_letter.append((message, Failure("publish-rejected", str(error))))
            else:
                outcome.release.append(message)
        self._ack([*done, *outcome.consumed])
        self._out.inc(len(done))
        now_ms = time.time() * 1000
        for message in done:
            if message.publish_time_ms:
                self._latency.observe(max(now_ms - message.publish_time_ms, 0.0) / 1000)

    async def _deliver(
        self,
        sinks: Sequence[Sink],
        messages: list[Outgoing],
        issued: asyncio.Event | None,
        *,
        in_place: bool = True,
    ) -> list[PulsarError | None]:
        """Send every message to every sink, retrying transient failures in place with backoff
        (each message only to the sinks that have not persisted it yet). Per message: None once
        persisted everywhere, the PublishRejected if a broker refused it, or the last transient
        error if draining interrupted the retries (or at once, without ``in_place``)."""
        results: list[PulsarError | None] = [None] * len(messages)
        everything = list(range(len(messages)))
        # Per sink, the messages it has not persisted yet (a list per sink, not a set per
        # message: this runs for every output).
        pending = [everything for _ in sinks]
        attempt = 0
        while True:
            sends = []
            for s, indexes in enumerate(pending):
                if indexes:
                    batch = messages if indexes is everything else [messages[i] for i in indexes]
                    sends.append((s, indexes, asyncio.ensure_future(sinks[s].send_batch(batch))))
            if issued is not None:
                await asyncio.sleep(0)  # each send_batch issues all its sends in its first step
                issued.set()
                issued = None
            transient: PulsarError | None = None
            for s, indexes, future in sends:
                failed: list[int] = []
                for i, error in zip(indexes, await future, strict=True):
                    if error is not None:
                        results[i] = error
                        if not isinstance(error, PublishRejected):
                            transient = error
                            failed.append(i)
                pending[s] = failed
            # What a broker refused is not sent again, to any sink.
            pending = [
                [i for i in left if not isinstance(results[i], PublishRejected)] for left in pending
            ]
            waiting = {i for left in pending for i in left}
            if not waiting:
                return [r if isinstance(r, PublishRejected) else None for r in results]
            if not in_place:
                return results
            self._retries.labels(**self._labels, reason="publish-failed").inc()
            log.warning(
                "publish_retry", attempt=attempt, waiting=len(waiting), error=str(transient)
            )
            if not await self._backoff(attempt):
                return results
            attempt += 1

    def _outgoing(self, message: Received, item: Message) -> Outgoing:
        """The output for ``message`` (effectively-once: with the sequence id of its
        position; raises PositionOutOfRange when that does not fit)."""
        properties = {
            TRACEPARENT: child_traceparent(message.properties.get(TRACEPARENT)),
            ITEM_ID_PROPERTY: item.routing_key(),
            STAGE_PROPERTY: self._config.stage,
            SOURCE_TOPIC_PROPERTY: message.topic,
            SOURCE_ID_PROPERTY: message.message_id,
        }
        payload, key = encode(item), message.key or item.routing_key()
        if not self._effectively_once:
            return Outgoing(payload, properties, key)
        if message.position is None:
            raise PositionOutOfRange(f"message {message.message_id} has no position")
        return Outgoing(
            payload,
            properties,
            key,
            sequence_id=sequence_id(message.position),
            partition=message.position.partition,
        )

    async def _send_dead_letters(
        self, failed: list[tuple[Received, Failure]], outcome: Outcome
    ) -> None:
        """Publish to the dead-letter topic with the reason; ack what was persisted."""
        if not failed:
            return
        outgoing = [
            Outgoing(message.payload, self._dead_letter_properties(message, f), message.key)
            for message, f in failed
        ]
        results = await self._deliver([self._dead_letter], outgoing, None)
        done = []
        for (message, failure), error in zip(failed, results, strict=True):
            if error is not None:
                log.error("dead_letter_failed", message_id=message.message_id, error=str(error))
                if isinstance(error, PublishRejected):
                    outcome.nack.append((message, Failure("dead-letter-rejected", str(error))))
                else:
                    outcome.release.append(message)
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
            REDELIVERY_PROPERTY: str(deliveries(message)),
            **failure.properties,
        }

    async def _retry_later(self, failed: list[tuple[Received, Failure]]) -> None:
        """Redeliver a message whose failure is its own, after ``negativeAckDelayMs``: it is
        re-published to the input topic with its delivery count in ``streamvane-deliveries``
        and the original is acked. Unlike a nack, this survives reconnects (the broker's
        redelivery count does not) and never redelivers the other messages of the original's
        producer batch (a nack redelivers the whole batch entry). If the re-publish fails,
        the original is nacked."""
        if not failed:
            return
        delay = self._config.delivery.negative_ack_delay_ms
        outgoing = [
            Outgoing(
                message.payload,
                {**message.properties, DELIVERIES_PROPERTY: str(deliveries(message) + 1)},
                message.key,
                deliver_after_ms=delay,
            )
            for message, _ in failed
        ]
        results = await self._send_retries(failed, outgoing)
        requeued: list[Received] = []
        nacked: list[Received] = []
        for (message, failure), error in zip(failed, results, strict=True):
            self._failed.labels(**self._labels, reason=failure.reason).inc()
            log.warning(
                "message_retried_later",
                message_id=message.message_id,
                reason=failure.reason,
                deliveries=deliveries(message) + 1,
                requeued=error is None,
            )
            (requeued if error is None else nacked).append(message)
        self._ack(requeued)
        self._nack(nacked)

    async def _send_retries(
        self, failed: list[tuple[Received, Failure]], outgoing: list[Outgoing]
    ) -> list[PulsarError | None]:
        """Each message back to its own input topic (the input or a side input)."""
        by_topic: dict[str, list[int]] = {}
        for i, (message, _) in enumerate(failed):
            topic = PARTITION_SUFFIX.sub("", message.topic)
            by_topic.setdefault(
                topic if topic in self._retry else self._config.input.topic, []
            ).append(i)
        results: list[PulsarError | None] = [None] * len(failed)
        for topic, indexes in by_topic.items():
            sent = await self._retry[topic].send_batch([outgoing[i] for i in indexes])
            for i, error in zip(indexes, sent, strict=True):
                results[i] = error
        return results

    def _ack(self, messages: list[Received]) -> None:
        self._source.ack(messages)
        self._settled(messages)

    def _nack(self, messages: list[Received]) -> None:
        self._source.nack(messages)
        self._settled(messages)
        if messages and self._effectively_once:
            self._replay("nacked", len(messages))

    def _release(self, messages: list[Received]) -> None:
        if messages:
            log.info("messages_released", count=len(messages))
            if self._effectively_once:
                self._replay("released", len(messages))
        self._settled(messages)

    def _replay(self, why: str, count: int) -> None:
        """Effectively-once: messages were left without their outputs. Nothing later may be
        written in this run (the broker would drop their outputs as duplicates once the
        later ones are written): stop, so the next run gets them again, in order."""
        self._gap = True
        if not self._stopping.is_set():
            log.error("effectively_once_replay", why=why, count=count)
            self.stop()

    def _settled(self, messages: list[Received]) -> None:
        for message in messages:
            self._received_at.pop(id(message), None)
        self._in_flight.dec(len(messages))
        self._note_oldest()

    def _note_oldest(self) -> None:
        self._oldest_since = next(iter(self._received_at.values()), None)

    async def _readiness_loop(self) -> None:
        while True:
            await asyncio.sleep(READINESS_INTERVAL_S)
            await self._refresh_readiness()

    async def _refresh_readiness(self) -> None:
        self._heartbeat = time.monotonic()
        backend = await self._backend_ready()
        pulsar = self._source.connected() and all(
            s.connected() for s in [*self._sinks, self._dead_letter]
        )
        if backend and not self._backend_up.is_set():
            log.info("backend_up")
        if not backend and self._backend_up.is_set():
            log.warning("backend_down")
        (self._backend_up.set if backend else self._backend_up.clear)()
        self._dependencies_up = backend and pulsar
        # A stage that reuses upstream embeddings keeps working while the backend is down.
        ready = (backend or not self._needs_backend) and pulsar and not self._stopping.is_set()
        if ready != self.ready:
            log.info("readiness_changed", ready=ready, backend=backend, pulsar=pulsar)
        self.ready = ready

    async def _close(self) -> None:
        closables: list[Sink | Source | AttemptLog] = [
            *self._sinks, self._dead_letter, *self._retry.values(), self._attempts, self._source
        ]  # fmt: skip
        for closable in closables:
            try:
                await closable.close()
            except PulsarError as e:
                log.warning("close_failed", error=str(e))


def _position_key(message: Received) -> tuple[int, int, int, int]:
    p = message.position
    return (p.partition, p.ledger_id, p.entry_id, p.batch_index) if p else (0, 0, 0, 0)


def deliveries(message: Received) -> int:
    """Earlier deliveries of a message that failed through its own fault: the count it carries
    since the worker re-published it for a later retry. The broker's redelivery count is not
    used: it restarts when a consumer reconnects, and counts redeliveries after a worker died
    or prefetched messages it never touched, which are not the message's fault."""
    try:
        return max(int(message.properties.get(DELIVERIES_PROPERTY, "0")), 0)
    except ValueError:
        return 0


async def _first(*waits: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
