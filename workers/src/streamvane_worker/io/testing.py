"""In-memory fakes of the broker adapters for unit tests.

Both fakes append to one shared ``events`` log (``("send", topic, id)``, ``("ack", id)``,
``("nack", id)``) so tests can assert ordering: an ack must come after every send for it.
"""

from __future__ import annotations

import asyncio
import itertools
import json

from streamvane_worker.io.base import Received
from streamvane_worker.io.errors import PulsarError

Event = tuple[str, ...]


class FakeSource:
    def __init__(self, events: list[Event] | None = None) -> None:
        self.events: list[Event] = events if events is not None else []
        self._queue: asyncio.Queue[Received] = asyncio.Queue()
        self._ids = itertools.count()
        self.acked: list[str] = []
        self.nacked: list[str] = []
        self.closed = False

    def publish(
        self,
        payload: bytes | dict[str, object],
        redelivery_count: int = 0,
        properties: dict[str, str] | None = None,
    ) -> str:
        """Queue a message for the worker; returns its message id."""
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        message_id = f"m{next(self._ids)}"
        self._queue.put_nowait(
            Received(
                payload=data,
                message_id=message_id,
                topic="persistent://t/n/in",
                redelivery_count=redelivery_count,
                publish_time_ms=0,
                properties=properties or {},
            )
        )
        return message_id

    async def receive(self) -> Received:
        return await self._queue.get()

    async def ack(self, message: Received) -> None:
        self.events.append(("ack", message.message_id))
        self.acked.append(message.message_id)

    async def nack(self, message: Received) -> None:
        self.events.append(("nack", message.message_id))
        self.nacked.append(message.message_id)

    def connected(self) -> bool:
        return not self.closed

    async def close(self) -> None:
        self.closed = True

    def pending(self) -> int:
        return self._queue.qsize()


class FakeSink:
    """Records sends; ``delay_s`` slows each send, ``fail_with`` is raised by the next sends."""

    def __init__(self, topic: str, events: list[Event], delay_s: float = 0.0) -> None:
        self.topic = topic
        self.events = events
        self.delay_s = delay_s
        self.fail_with: list[PulsarError] = []
        self.sent: list[tuple[bytes, dict[str, str], str | None]] = []
        self.closed = False

    async def send(self, payload: bytes, properties: dict[str, str], key: str | None) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.sent.append((payload, properties, key))
        self.events.append(("send", self.topic, properties.get("streamvane-source-message-id", "")))

    def connected(self) -> bool:
        return not self.closed

    async def close(self) -> None:
        self.closed = True

    def items(self) -> list[dict[str, object]]:
        return [json.loads(payload) for payload, _, _ in self.sent]
