"""What a stage is: a batch of input messages in, output messages and per-message errors out.

Each stage type declares the message models it reads and writes (``StageKind``); the content
stages read and write ``ContentItem``.

Stages never raise for bad data: an item they cannot process becomes an ``ItemError`` (the
runtime dead-letters it with the reason). They do raise ``InferenceError`` for failures of the
model backend, which the runtime retries or negative-acks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import numpy as np
from prometheus_client import CollectorRegistry

from streamvane_worker.config import StageType
from streamvane_worker.inference.backend import EmbeddingArray
from streamvane_worker.inference.embedder import Embedder
from streamvane_worker.inference.errors import BackendUnavailable
from streamvane_worker.inference.ranker import Ranker
from streamvane_worker.io.base import Outgoing, Reader, Sink
from streamvane_worker.stages.item import ContentItem, StageRecord
from streamvane_worker.stages.message import Message

In = TypeVar("In", bound=Message)


@dataclass(frozen=True)
class ItemError:
    index: int
    reason: str
    detail: str


@dataclass(frozen=True)
class StageResult:
    outputs: Mapping[int, Message] = field(default_factory=dict)
    """Output messages by the index of their input in the batch."""
    errors: list[ItemError] = field(default_factory=list)


class Stage(Protocol[In]):
    async def process(self, items: list[In]) -> StageResult: ...


class OutputUnavailable(BackendUnavailable):
    """A stage's own writes could not be persisted: the batch is retried."""


async def send_all(sends: Sequence[tuple[Sink, list[Outgoing]]]) -> None:
    """Send each batch to its sink, concurrently; ``OutputUnavailable`` if any message of any
    batch was refused (the stage's batch is then retried: its writes are at-least-once)."""
    sends = [(sink, batch) for sink, batch in sends if batch]
    results = await asyncio.gather(*(sink.send_batch(batch) for sink, batch in sends))
    for (sink, _), errors in zip(sends, results, strict=True):
        failed = [e for e in errors if e is not None]
        if failed:
            raise OutputUnavailable(f"publish to {sink.topic} failed: {failed[0]}")


class Closable(Protocol):
    async def close(self) -> None: ...


@dataclass(frozen=True)
class Topics:
    """Broker access for stages that read or write topics beside their input and outputs
    (a catalogue, a state topic); what they open is closed when the worker stops."""

    reader: Callable[[str, bytes | None], Awaitable[Reader]]
    """Open a reader on a topic after a position (``Record.position``), or from the start."""
    sink: Callable[[str], Awaitable[Sink]]


@dataclass(frozen=True)
class StageContext:
    name: str
    """Stage name within the pipeline."""
    stage_type: StageType
    params: object
    embedder: Embedder | None
    pipeline: str = ""
    topics: Topics | None = None
    """None for stages that only read their input."""
    state_topic: str | None = None
    """Compacted topic a stateful stage checkpoints its keyed state to."""
    registry: CollectorRegistry | None = None
    """Where a stage registers its own metrics (state size, index size)."""
    identity: str = ""
    """Unique per replica: tells a replica's own checkpoints from other replicas'."""
    closables: list[Closable] = field(default_factory=list)
    """Readers, sinks and tasks the stage opened, closed by the worker on the way out."""
    ranker: Ranker | None = None
    """The ranking model, for the ranking stage."""
    model_server: Callable[[str], Ranker] | None = None
    """A client of another model on the stage's Triton, by name, not started (a tagging
    stage's trained head); None when the stage's model is not on Triton."""
    input_topic: str = ""
    """The fully qualified input topic (local topic params are qualified like it)."""
    outputs: tuple[str, ...] = ()
    """The output topics, for a stage that writes its outputs itself."""


StageFactory = Callable[[StageContext], Awaitable[Stage[Any]]]


@dataclass(frozen=True)
class StageKind:
    """A stage type: how to create it and the message models it reads and writes."""

    create: StageFactory
    input: type[Message]
    output: type[Message]
    side_inputs: Mapping[str, type[Message]] = field(default_factory=dict)
    """Topics read besides the input, with the same subscription: the message model of each
    by the param naming the topic (``config.SIDE_INPUTS_BY_STAGE`` names them too)."""


class Stopwatch:
    """Times one batch and stamps the provenance record the stage appends to each item."""

    def __init__(self, ctx: StageContext, batch_size: int) -> None:
        self._ctx = ctx
        self._batch_size = batch_size
        self._started = time.perf_counter()

    def record(self, inference_ms: float | None) -> StageRecord:
        info = self._ctx.embedder.info if self._ctx.embedder else None
        return StageRecord(
            stage=self._ctx.name,
            stage_type=str(self._ctx.stage_type),
            model=info.name if info else None,
            model_version=info.version if info else None,
            inference_ms=inference_ms,
            batch_ms=(time.perf_counter() - self._started) * 1000,
            batch_size=self._batch_size,
            processed_at=datetime.now(UTC),
        )


def require_embedder(ctx: StageContext) -> Embedder:
    if ctx.embedder is None:
        raise ValueError(f"stage type {ctx.stage_type} needs an inference backend")
    return ctx.embedder


@dataclass(frozen=True)
class Vectors:
    by_index: dict[int, EmbeddingArray]
    inference_ms: float | None
    """Model time, or None when every vector was reused from upstream."""
    errors: list[ItemError]


async def item_vectors(embedder: Embedder, items: list[ContentItem], *, reuse: bool) -> Vectors:
    """Each item's embedding. With ``reuse``, an embedding an upstream stage computed with the
    same model is taken from the item; the rest are computed in one call. Items with nothing to
    embed become ``no-text`` errors."""
    info = embedder.info
    reused: dict[int, EmbeddingArray] = {}
    to_embed: list[int] = []
    errors: list[ItemError] = []
    for i, item in enumerate(items):
        if reuse and item.embedding is not None and item.embedding.model == info.name:
            reused[i] = np.asarray(item.embedding.vector, dtype=np.float32)
        elif item.text().strip():
            to_embed.append(i)
        else:
            errors.append(ItemError(i, "no-text", "item has no title, description or transcript"))
    if not to_embed:
        return Vectors(by_index=reused, inference_ms=None, errors=errors)
    embedded = await embedder.embed([items[i].text() for i in to_embed])
    computed = dict(zip(to_embed, embedded.vectors, strict=True))
    return Vectors(by_index=reused | computed, inference_ms=embedded.inference_ms, errors=errors)
