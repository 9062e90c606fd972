"""What the runtime needs from a message broker: a source of messages and sinks for results.

Pulsar implements it (``io.pulsar``); ``io.testing`` fakes it for unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


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


class Source(Protocol):
    async def receive(self) -> Received: ...

    async def ack(self, message: Received) -> None: ...

    async def nack(self, message: Received) -> None:
        """Redeliver later (after the configured negative-ack delay)."""
        ...

    def connected(self) -> bool: ...

    async def close(self) -> None: ...


class Sink(Protocol):
    topic: str

    async def send(self, payload: bytes, properties: dict[str, str], key: str | None) -> None:
        """Returns once the broker has persisted the message; raises PulsarError otherwise."""
        ...

    def connected(self) -> bool: ...

    async def close(self) -> None:
        """Flushes pending sends, then closes."""
        ...
