"""training-examples: served recommendations joined with the engagements that answer them.

    recommendations + engagements --training-examples--> TrainingExample (+ late events)

The stage's input is the recommendations topic; it reads the engagements topic too, with the
same subscription and subscription type (``engagementsTopic``, a side input). Both are keyed by
user id, and with Key_Shared the broker's consistent-hash selector maps a key to the same
consumer on every topic whose consumers are the same (each replica subscribes to both under
one unique consumer name), so one user's recommendations and engagements meet on one replica.

Each served item of a ``Recommendations`` message opens a window of ``windowSeconds`` of event
time from its ``rankedAt``. The first qualifying engagement of the item (its type in
``positiveEvents``, its dwell at least ``minDwellMs``) with the same request id within the
window yields a positive at once (``ts``: the engagement's time); when the window closes
without one the item yields a negative (``ts``: the window's end), kept with probability
``negativeSampleRate`` decided by its id (a replay keeps the same ones). With ``negatives:
shown`` only items the user answered with some engagement of the request (an impression, a
skip) yield negatives: a list computed but never shown says nothing about its items. Example ids are uuid5
of request id and item id, so every copy of an example has one id.

Windows close on event time: the replica's watermark is the newest event time it has seen
(never ahead of its wall clock) less ``allowedLatenessSeconds``; once no input arrived for
``idleFlushSeconds`` the watermark also moves on with the wall clock, so windows still close
when traffic stops (a background task checks every second). Engagements that join nothing go
to the late-events topic with the reason in ``streamvane-late-reason``: ``after-window`` (its
event time is past the window), ``window-closed`` (in the window, but it arrived after the
window had closed), ``unknown-request`` (no request id, or a request never served),
``item-not-served`` (the request did not serve that item). The two topics are not read in any
order relative to each other (a backlog of one may be read before the other's), so an
engagement of a request not served yet waits in the state until the watermark passes its
event time (its list, served before it, would have been read by then), and joins the list if
it comes; only then is it late as ``unknown-request``.

State: one entry per request, keyed by request id, checkpointed to the compacted state topic
(``keyed_state``). A batch's examples and late events are persisted first, then the state
change, then the inputs are acked: a crash before the state is persisted repeats the same
examples (same ids), a crash after it re-reads the inputs but the state says what was already
emitted, so nothing is lost and nothing is emitted twice but through at-least-once. A closed
request keeps a small marker for another window (to tell ``window-closed`` from unknown), then
is deleted. Only a replica that owns a request (``KeyedState.owned``) closes it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import structlog

from streamvane_worker.config import TrainingExamplesParams, late_topic, qualify_like
from streamvane_worker.inference.errors import BackendUnavailable
from streamvane_worker.inference.ranker import ITEM, USER
from streamvane_worker.io.base import Outgoing, Sink
from streamvane_worker.stages.base import (
    ItemError,
    Stage,
    StageContext,
    StageKind,
    StageResult,
    send_all,
)
from streamvane_worker.stages.keyed_state import Codec, KeyedState, StateMetrics
from streamvane_worker.stages.recommendation import Engagement, Recommendations
from streamvane_worker.training.examples import FeatureValue, TrainingExample

log = structlog.get_logger(__name__)

EXAMPLE_IDS = uuid.UUID("0b8f6a52-3c1d-4e7a-9f20-6d5e4c3b2a19")
"""Namespace of the training example ids (uuid5 of request id and item id)."""
LATE_REASON_PROPERTY = "streamvane-late-reason"
FLUSH_INTERVAL_S = 1.0
HASH_SPACE = float(2**64)


@dataclass(frozen=True)
class ServedItem:
    item_id: str
    item: tuple[float, ...]
    """The item vector the ranker saw (float32 values)."""
    dense: tuple[tuple[str, float], ...]
    """The ranker's dense features by name, as logged."""
    positive: bool = False
    shown: bool = False
    """An engagement of the request named it (kept only with ``negatives: shown``)."""


@dataclass(frozen=True)
class Request:
    """A served list: open until its window closes, then a marker without its items."""

    request_id: str
    user_id: str
    model_version: str
    served_ms: int
    window_end_ms: int
    user: tuple[float, ...]
    items: tuple[ServedItem, ...]
    closed: bool = False
    version: int = 1
    waiting: tuple[str, ...] = ()
    """Engagements (JSON) that came before their request was served: the two topics are read
    in no particular order relative to each other. Only while ``served_ms`` is -1; then
    ``window_end_ms`` is the newest one's event time."""

    @property
    def served(self) -> bool:
        return self.served_ms >= 0


@dataclass(frozen=True)
class Joined:
    """What one engagement does: a new request state and a positive, a late reason, or
    nothing (not qualifying, or the item is already a positive)."""

    request: Request | None = None
    example: TrainingExample | None = None
    late: str | None = None


@dataclass(frozen=True)
class Closed:
    """Closing a request: its negatives, engagements that waited for it in vain, and what
    replaces it (None: delete it)."""

    examples: list[TrainingExample]
    after: Request | None
    late: list[Engagement] = field(default_factory=list)


@dataclass(frozen=True)
class Served:
    """A request served: its state, and what the engagements that waited for it yield."""

    request: Request
    examples: list[TrainingExample]
    late: list[tuple[Engagement, str]]


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def example_id(request_id: str, item_id: str) -> str:
    return str(uuid.uuid5(EXAMPLE_IDS, f"{request_id}\n{item_id}"))


def kept(identifier: str, rate: float) -> bool:
    """Whether a negative survives down-sampling at ``rate``: a function of its id alone."""
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(identifier.encode()).digest()
    return int.from_bytes(digest[:8], "big") / HASH_SPACE < rate


def served(recommendations: Recommendations, request_id: str, window_ms: int) -> Request:
    served_ms = ms(recommendations.ranked_at)
    return Request(
        request_id=request_id,
        user_id=recommendations.user_id,
        model_version=recommendations.model.version,
        served_ms=served_ms,
        window_end_ms=served_ms + window_ms,
        user=tuple(recommendations.user_features.tolist()),
        items=tuple(
            ServedItem(
                item.item_id,
                tuple(item.features.item.tolist()),
                tuple(item.features.dense.items()),
            )
            for item in recommendations.items
        ),
    )


def example(
    request: Request, item: ServedItem, label: int, ts_ms: int, sample_rate: float
) -> TrainingExample:
    """The ranker's logged features in the replay shape: ``user``, ``item``, dense by name."""
    features: dict[str, FeatureValue] = {USER: list(request.user), ITEM: list(item.item)}
    features.update(item.dense)
    return TrainingExample(
        label=label,
        ts=ts_ms,
        features=features,
        id=example_id(request.request_id, item.item_id),
        request_id=request.request_id,
        user_id=request.user_id,
        item_id=item.item_id,
        sample_rate=sample_rate,
        model_version=request.model_version,
    )


def qualifies(event: Engagement, params: TrainingExamplesParams) -> bool:
    return (
        event.event_type.value in params.positive_events and event.dwell_ms >= params.min_dwell_ms
    )


def waiting_for(request_id: str, event: Engagement) -> Request:
    """An engagement whose request was not served (yet): it waits in the state."""
    at = ms(event.event_time)
    return Request(request_id, event.user_id, "", -1, at, (), (), waiting=(_json(event),))


def join(request: Request | None, event: Engagement, params: TrainingExamplesParams) -> Joined:
    """Apply one engagement to the request it answers (pure)."""
    if request is None:
        if event.request_id is None:
            return Joined(late="unknown-request")
        return Joined(request=waiting_for(event.request_id, event))
    if not request.served:
        if _json(event) in request.waiting:  # a redelivery
            return Joined()
        return Joined(
            request=replace(
                request,
                waiting=(*request.waiting, _json(event)),
                window_end_ms=max(request.window_end_ms, ms(event.event_time)),
                version=request.version + 1,
            )
        )
    if ms(event.event_time) > request.window_end_ms:
        return Joined(late="after-window")
    if request.closed:
        return Joined(late="window-closed")
    index = next((i for i, s in enumerate(request.items) if s.item_id == event.item_id), None)
    if index is None:
        return Joined(late="item-not-served")
    item = request.items[index]
    positive = not item.positive and qualifies(event, params)
    shown = params.negatives == "shown" and not item.shown
    if not (positive or shown):
        return Joined()
    items = list(request.items)
    items[index] = replace(item, positive=item.positive or positive, shown=item.shown or shown)
    return Joined(
        request=replace(request, items=tuple(items), version=request.version + 1),
        example=example(request, item, 1, ms(event.event_time), 1.0) if positive else None,
    )


def serve(
    recommendations: Recommendations,
    request_id: str,
    current: Request | None,
    params: TrainingExamplesParams,
) -> Served | None:
    """A served list opens its request, and the engagements that came first join it in
    event-time order (pure); None when it was served already (a redelivery)."""
    if current is not None and current.served:
        return None
    request = served(recommendations, request_id, int(params.window_seconds * 1000))
    request = replace(request, version=current.version + 1 if current else 1)
    examples: list[TrainingExample] = []
    late: list[tuple[Engagement, str]] = []
    early = [Engagement.model_validate_json(e) for e in current.waiting] if current else []
    for event in sorted(early, key=lambda e: e.event_time):
        joined = join(request, event, params)
        request = joined.request or request
        if joined.example is not None:
            examples.append(joined.example)
        if joined.late is not None:
            late.append((event, joined.late))
    return Served(request, examples, late)


def close(
    request: Request, watermark_ms: int, window_ms: int, params: TrainingExamplesParams
) -> Closed | None:
    """Close a request whose window the watermark passed (negatives for the items that got
    no positive, with ``negatives: shown`` only those shown, down-sampled by id), or delete a
    marker a window after; None: not yet. An
    engagement at the window's very end still joins: the watermark must be past it. Once the
    watermark passed the engagements that waited for an unserved request, its list was
    served before them if at all: they are late, as ``unknown-request``."""
    if watermark_ms < due(request, window_ms):
        return None
    if not request.served:
        return Closed([], None, [Engagement.model_validate_json(e) for e in request.waiting])
    if request.closed:
        return Closed([], None)
    rate = params.negative_sample_rate
    negatives = [
        example(request, item, 0, request.window_end_ms, rate)
        for item in request.items
        if not item.positive
        and (item.shown or params.negatives == "served")
        and kept(example_id(request.request_id, item.item_id), rate)
    ]
    marker = replace(request, user=(), items=(), closed=True, version=request.version + 1)
    return Closed(negatives, marker)


def due(request: Request, window_ms: int) -> int:
    """The watermark at which ``close`` next changes the request."""
    return request.window_end_ms + (window_ms if request.closed else 0) + 1


def _json(event: Engagement) -> str:
    return event.model_dump_json(by_alias=True, exclude_none=True)


@dataclass
class Watermark:
    """Event-time progress of one replica, moving on with the wall clock when idle."""

    lateness_ms: int
    idle_ms: int
    newest_ms: int = 0
    """Newest event time seen (capped at the wall clock when seen)."""
    last_input: float = 0.0
    """Wall clock (seconds) of the last input."""
    floor_ms: int = 0
    """The watermark never goes back."""

    def observe(self, event_ms: Iterable[int], now: float) -> None:
        wall_ms = int(now * 1000)
        for t in event_ms:
            self.newest_ms = max(self.newest_ms, min(t, wall_ms))
        self.last_input = now

    def at(self, now: float) -> int:
        idle = max(0, int((now - self.last_input) * 1000) - self.idle_ms)
        self.floor_ms = max(self.floor_ms, self.newest_ms - self.lateness_ms + idle)
        return self.floor_ms


def _encode_floats(values: Sequence[float]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


def _decode_floats(text: str) -> tuple[float, ...]:
    return tuple(np.frombuffer(base64.b64decode(text), dtype="<f4").tolist())


def encode_state(request: Request) -> bytes:
    return json.dumps(
        {
            "requestId": request.request_id,
            "userId": request.user_id,
            "modelVersion": request.model_version,
            "servedMs": request.served_ms,
            "windowEndMs": request.window_end_ms,
            "user": _encode_floats(request.user),
            "items": [
                {
                    "itemId": s.item_id,
                    "item": _encode_floats(s.item),
                    "dense": dict(s.dense),
                    "positive": s.positive,
                    "shown": s.shown,
                }
                for s in request.items
            ],
            "closed": request.closed,
            "version": request.version,
            "waiting": list(request.waiting),
        }
    ).encode()


def decode_state(payload: bytes) -> Request:
    """Raises ValueError for a payload that is not a request state."""
    try:
        data = json.loads(payload)
        return Request(
            request_id=str(data["requestId"]),
            user_id=str(data["userId"]),
            model_version=str(data["modelVersion"]),
            served_ms=int(data["servedMs"]),
            window_end_ms=int(data["windowEndMs"]),
            user=_decode_floats(data["user"]),
            items=tuple(
                ServedItem(
                    str(s["itemId"]),
                    _decode_floats(s["item"]),
                    tuple((str(k), float(v)) for k, v in s["dense"].items()),
                    bool(s["positive"]),
                    bool(s.get("shown", False)),  # absent from states written before it
                )
                for s in data["items"]
            ),
            closed=bool(data["closed"]),
            version=int(data["version"]),
            waiting=tuple(str(e) for e in data["waiting"]),
        )
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a request state: {e}") from e


CODEC: Codec[Request] = Codec(encode_state, decode_state, lambda r: r.version)


def example_out(item: TrainingExample) -> Outgoing:
    return Outgoing(
        item.model_dump_json(by_alias=True, exclude_none=True).encode(), {}, item.routing_key()
    )


def _late_out(event: Engagement, reason: str) -> Outgoing:
    return Outgoing(_json(event).encode(), {LATE_REASON_PROPERTY: reason}, event.routing_key())


class TrainingExamplesStage:
    def __init__(
        self,
        params: TrainingExamplesParams,
        state: KeyedState[Request],
        outputs: Sequence[Sink],
        late: Sink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._params = params
        self._window_ms = int(params.window_seconds * 1000)
        self._state = state
        self._outputs = outputs
        self._late = late
        self._clock = clock
        self._watermark = Watermark(
            int(params.allowed_lateness_seconds * 1000), int(params.idle_flush_seconds * 1000)
        )
        self._deadlines: list[tuple[int, str]] = []
        """(deadline, request id) of the requests this replica wrote; stale ones are skipped."""
        # Batches and the idle flush run concurrently; state updates must not interleave.
        self._updating = asyncio.Lock()

    def resume(self) -> None:
        """After the state was rebuilt: the owned requests' deadlines, and the watermark from
        the newest request served (so an idle restart still closes windows)."""
        owned = self._state.owned()
        for key, request in owned:
            heapq.heappush(self._deadlines, (due(request, self._window_ms), key))
        newest = max((r.served_ms for _, r in owned), default=0)  # -1: not served yet
        self._watermark.observe([newest], self._clock())

    async def process(self, items: list[Recommendations | Engagement]) -> StageResult:
        async with self._updating:
            await self._state.catch_up()
            changed: dict[str, Request | None] = {}
            examples: list[TrainingExample] = []
            late: list[Outgoing] = []
            errors: list[ItemError] = []
            for i, item in enumerate(items):
                if isinstance(item, Recommendations) and item.request_id is None:
                    errors.append(ItemError(i, "no-request-id", "recommendations need a requestId"))
                else:
                    self._apply(item, changed, examples, late)
            now = self._clock()
            self._watermark.observe((_event_ms(item) for item in items), now)
            self._close_due(self._watermark.at(now), changed, examples, late)
            await self._persist(examples, late, changed)
        return StageResult(errors=errors)

    async def flush(self) -> None:
        """Close what the watermark passed without input (the idle flush)."""
        async with self._updating:
            watermark = self._watermark.at(self._clock())
            if not self._deadlines or self._deadlines[0][0] > watermark:
                return
            await self._state.catch_up()
            changed: dict[str, Request | None] = {}
            examples: list[TrainingExample] = []
            late: list[Outgoing] = []
            self._close_due(watermark, changed, examples, late)
            await self._persist(examples, late, changed)

    def _apply(
        self,
        item: Recommendations | Engagement,
        changed: dict[str, Request | None],
        examples: list[TrainingExample],
        late: list[Outgoing],
    ) -> None:
        key = item.request_id
        if isinstance(item, Recommendations):
            assert key is not None  # checked by the caller
            opened = serve(item, key, self._current(changed, key), self._params)
            if opened is not None:
                changed[key] = opened.request
                examples.extend(opened.examples)
                late.extend(_late_out(e, reason) for e, reason in opened.late)
            return
        joined = join(self._current(changed, key) if key else None, item, self._params)
        if joined.late is not None:
            late.append(_late_out(item, joined.late))
        if joined.request is not None and key:
            changed[key] = joined.request
        if joined.example is not None:
            examples.append(joined.example)

    def _current(self, changed: dict[str, Request | None], key: str) -> Request | None:
        return changed[key] if key in changed else self._state.get(key)

    def _close_due(
        self,
        watermark: int,
        changed: dict[str, Request | None],
        examples: list[TrainingExample],
        late: list[Outgoing],
    ) -> None:
        for key, request in changed.items():
            if request is not None:
                heapq.heappush(self._deadlines, (due(request, self._window_ms), key))
        while self._deadlines and self._deadlines[0][0] <= watermark:
            _, key = heapq.heappop(self._deadlines)
            if key not in changed and not self._state.is_owned(key):
                continue  # deleted, evicted, or another replica took it over
            request = self._current(changed, key)
            if request is None:
                continue
            closed = close(request, watermark, self._window_ms, self._params)
            if closed is None:
                continue  # a stale deadline: the request's own is still queued
            examples.extend(closed.examples)
            late.extend(_late_out(e, "unknown-request") for e in closed.late)
            changed[key] = closed.after
            if closed.after is not None:
                heapq.heappush(self._deadlines, (due(closed.after, self._window_ms), key))

    async def _persist(
        self,
        examples: list[TrainingExample],
        late: list[Outgoing],
        changed: dict[str, Request | None],
    ) -> None:
        """Examples and late events first, then the state: see the module docstring."""
        outgoing = [example_out(e) for e in examples]
        await send_all([*((sink, outgoing) for sink in self._outputs), (self._late, late)])
        await self._state.commit(changed)
        if examples or late:
            positives = sum(e.label for e in examples)
            log.info(
                "examples_emitted",
                positives=positives,
                negatives=len(examples) - positives,
                late=len(late),
            )


def _event_ms(item: Recommendations | Engagement) -> int:
    return ms(item.ranked_at if isinstance(item, Recommendations) else item.event_time)


class IdleFlush:
    """The task that runs ``flush`` every second; closing cancels it."""

    def __init__(self, stage: TrainingExamplesStage) -> None:
        self._stage = stage
        self._task = asyncio.create_task(self._run(), name="training-examples-flush")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self._stage.flush()
            except BackendUnavailable as e:  # the broker is down: the next turn tries again
                log.warning("flush_failed", error=str(e)[:300])

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def build(ctx: StageContext, clock: Callable[[], float] = time.time) -> TrainingExamplesStage:
    """The stage with its state rebuilt (without the idle flush task)."""
    params = TrainingExamplesParams.model_validate(ctx.params)
    if ctx.topics is None or ctx.state_topic is None:
        raise ValueError("training-examples needs broker access and a state topic")
    outputs = [await ctx.topics.sink(topic) for topic in ctx.outputs]
    ctx.closables.extend(outputs)
    local = late_topic(ctx.pipeline, ctx.name, params.model_dump(by_alias=True))
    late = await ctx.topics.sink(qualify_like(ctx.input_topic, local))
    ctx.closables.append(late)
    state = KeyedState(
        await ctx.topics.reader(ctx.state_topic, None),
        await ctx.topics.sink(ctx.state_topic),
        CODEC,
        identity=ctx.identity,
        max_entries=params.max_requests,
        # Long past any window: a request idle this long is one whose replica lost it.
        ttl_s=params.window_seconds * 2 + params.idle_flush_seconds + 86_400,
        metrics=StateMetrics.create(ctx.registry, ctx.pipeline, ctx.name),
    )
    ctx.closables.append(state)
    await state.rebuild()
    stage = TrainingExamplesStage(params, state, outputs, late, clock)
    stage.resume()
    return stage


async def create(ctx: StageContext) -> Stage[Recommendations | Engagement]:
    stage = await build(ctx)
    ctx.closables.append(IdleFlush(stage))
    return stage


KIND = StageKind(
    create, Recommendations, TrainingExample, side_inputs={"engagementsTopic": Engagement}
)
