"""What the runtime needs from a message broker: batches of messages in, batches of results out.

Batch-shaped on purpose: crossing from the broker client's threads into the event loop costs
more than the work on a small message, so it happens once per micro-batch, not per message.
Pulsar implements it (``io.pulsar``); ``io.testing`` fakes it for unit tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from streamvane_worker.io.errors import PulsarError
from streamvane_worker.io.sequence import NON_PARTITIONED, Position


@dataclass(frozen=True)
class Received:
    payload: bytes
    message_id: str
    topic: str
    redelivery_count: int
    publish_time_ms: int
    properties: dict[str, str] = field(default_factory=dict)
    key: str | None = None
    handle: object = None
    """The broker's own message object, passed back to ack / nack."""
    position: Position | None = None
    """Partition, ledger, entry and batch index of the message (effectively-once)."""


@dataclass(frozen=True)
class Outgoing:
    payload: bytes
    properties: dict[str, str]
    key: str | None
    deliver_after_ms: int = 0
    """Delayed delivery (Shared subscriptions; others deliver at once)."""
    sequence_id: int | None = None
    """Effectively-once: the broker drops it if this producer already wrote this id."""
    partition: int = NON_PARTITIONED
    """Effectively-once: the input partition, which picks the producer that writes it."""


class Source(Protocol):
    async def receive_batch(self) -> list[Received]:
        """Up to maxBatchSize messages, waiting at most maxDelayMs (may return none)."""
        ...

    def ack(self, messages: Sequence[Received]) -> None: ...

    def nack(self, messages: Sequence[Received]) -> None:
        """Redeliver later (after the configured negative-ack delay)."""
        ...

    def connected(self) -> bool: ...

    async def close(self) -> None: ...


class Sink(Protocol):
    topic: str

    async def send_batch(self, messages: Sequence[Outgoing]) -> list[PulsarError | None]:
        """Publishes all; returns once the broker answered for each: None if persisted.

        Must hand every message to the client, in order, before its first ``await``: the
        runtime relies on it to publish batches in the order they were received."""
        ...

    def connected(self) -> bool: ...

    async def close(self) -> None:
        """Flushes pending sends, then closes."""
        ...


@dataclass(frozen=True)
class Record:
    """One message read back from a topic by a ``Reader``."""

    key: str | None
    payload: bytes
    """Empty for a tombstone: the key was deleted."""
    position: bytes
    """Serialized message id: a reader opened after it resumes with the next message."""
    properties: dict[str, str] = field(default_factory=dict)


class Reader(Protocol):
    """Reads a topic in order, without a subscription (catalogues, checkpoints)."""

    async def read_available(self, max_records: int, wait_ms: int) -> list[Record]:
        """Up to ``max_records`` messages published and not yet read; waits up to ``wait_ms``
        for the first one when there are none (returns none when still caught up)."""
        ...

    async def close(self) -> None: ...


class AttemptLog(Protocol):
    """A journal of delivery attempts that outlives the worker: the broker's redelivery count
    restarts when a consumer reconnects and does not count deliveries to a worker that died, so
    a message that kills the worker would otherwise loop forever."""

    async def begin(self, messages: Sequence[Received]) -> list[int]:
        """Durably records that these messages are being attempted, before any work on them.

        Returns, per message, the earlier attempts that never ended (the worker holding it
        died). Raises PulsarError if the journal cannot be written."""
        ...

    def undo(self, messages: Sequence[Received]) -> None:
        """Takes back one begun attempt of each (best effort, never raises)."""
        ...

    def end(self, messages: Sequence[Received]) -> None:
        """Records that these attempts ended with an outcome (acked, nacked, dead-lettered,
        or handed back while draining); best effort, never raises."""
        ...

    async def close(self) -> None: ...
