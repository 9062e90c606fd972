"""In-memory fakes of the broker adapters for unit tests.

Both fakes append to one shared ``events`` log (``("send", topic, source id)``, ``("ack", id)``,
``("nack", id)``) so tests can assert ordering: an ack must come after every send for it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Sequence

from streamvane_worker.io.base import Outgoing, Received, Record
from streamvane_worker.io.errors import PulsarError
from streamvane_worker.io.sequence import NON_PARTITIONED, Position

Event = tuple[str, ...]


class FakeSource:
    """Batches like the Pulsar consumer's batch-receive policy: up to ``max_batch`` messages,
    returning after ``max_delay_s`` with what arrived (possibly none)."""

    def __init__(
        self, events: list[Event] | None = None, max_batch: int = 32, max_delay_s: float = 0.01
    ) -> None:
        self.events: list[Event] = events if events is not None else []
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
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
        topic: str = "persistent://t/n/in",
    ) -> str:
        """Queue a message for the worker (from ``topic``: the input, or a side input);
        returns its message id. Messages sit one per entry of ledger 1 of a non-partitioned
        topic, in publish order."""
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        index = next(self._ids)
        message_id = f"m{index}"
        self._queue.put_nowait(
            Received(
                payload=data,
                message_id=message_id,
                topic=topic,
                redelivery_count=redelivery_count,
                publish_time_ms=int(time.time() * 1000),
                properties=properties or {},
                position=Position(NON_PARTITIONED, 1, index, -1),
            )
        )
        return message_id

    async def receive_batch(self) -> list[Received]:
        batch: list[Received] = []
        deadline = time.monotonic() + self.max_delay_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    def ack(self, messages: Sequence[Received]) -> None:
        for message in messages:
            self.events.append(("ack", message.message_id))
            self.acked.append(message.message_id)

    def nack(self, messages: Sequence[Received]) -> None:
        for message in messages:
            self.events.append(("nack", message.message_id))
            self.nacked.append(message.message_id)

    def connected(self) -> bool:
        return not self.closed

    async def close(self) -> None:
        self.closed = True

    def pending(self) -> int:
        return self._queue.qsize()


class FakeSink:
    """Records sends; ``delay_s`` slows each batch, ``fail_with`` fails the next messages."""

    def __init__(
        self,
        topic: str,
        events: list[Event],
        delay_s: float = 0.0,
        log: list[Record] | None = None,
    ) -> None:
        self.topic = topic
        self.log = log
        """When set, what is persisted is appended as records, for ``FakeReader``s to read."""
        self.events = events
        self.delay_s = delay_s
        self.fail_with: list[PulsarError] = []
        self.issued: list[Outgoing] = []
        """Messages in the order they were handed over (``sent``: in the order persisted)."""
        self.sent: list[Outgoing] = []
        self.closed = False

    async def send_batch(self, messages: Sequence[Outgoing]) -> list[PulsarError | None]:
        self.issued.extend(messages)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        results: list[PulsarError | None] = []
        for message in messages:
            if self.fail_with:
                results.append(self.fail_with.pop(0))
                continue
            self.sent.append(message)
            if self.log is not None:
                position = str(len(self.log)).encode()
                self.log.append(Record(message.key, message.payload, position, message.properties))
            source = message.properties.get("streamvane-source-message-id", "")
            self.events.append(("send", self.topic, source))
            results.append(None)
        return results

    def connected(self) -> bool:
        return not self.closed

    async def close(self) -> None:
        self.closed = True

    def items(self) -> list[dict[str, object]]:
        return [json.loads(message.payload) for message in self.sent]


class FakeReader:
    """Reads a topic's record log (shared with the ``FakeSink``s writing it) after a position."""

    def __init__(self, log: list[Record], after: bytes | None = None) -> None:
        self._log = log
        self._next = int(after) + 1 if after else 0
        self.closed = False

    async def read_available(self, max_records: int, wait_ms: int) -> list[Record]:
        records = self._log[self._next : self._next + max_records]
        self._next += len(records)
        if not records and wait_ms:
            await asyncio.sleep(min(wait_ms, 10) / 1000)
        return records

    async def close(self) -> None:
        self.closed = True


class FakeBroker:
    """Topics as record logs: ``FakeSink``s append to them and ``FakeReader``s read them."""

    def __init__(self) -> None:
        self.logs: dict[str, list[Record]] = {}
        self.events: list[Event] = []

    def log(self, topic: str) -> list[Record]:
        return self.logs.setdefault(topic, [])

    def publish(self, topic: str, key: str | None, payload: bytes | dict[str, object]) -> None:
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        log = self.log(topic)
        log.append(Record(key, data, str(len(log)).encode()))

    async def reader(self, topic: str, after: bytes | None) -> FakeReader:
        return FakeReader(self.log(topic), after)

    async def sink(self, topic: str) -> FakeSink:
        return FakeSink(topic, self.events, log=self.log(topic))


class FakeAttemptLog:
    """The attempt journal in memory; ``crashed(id, n)`` pretends n workers died holding it."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}
        self.fail_with: list[PulsarError] = []
        self.begun: list[str] = []
        self.ended: list[str] = []
        self.closed = False

    def crashed(self, message_id: str, times: int) -> None:
        self.open[message_id] = self.open.get(message_id, 0) + times

    async def begin(self, messages: Sequence[Received]) -> list[int]:
        if self.fail_with:
            raise self.fail_with.pop(0)
        counts = [self.open.get(m.message_id, 0) for m in messages]
        for message in messages:
            self.open[message.message_id] = self.open.get(message.message_id, 0) + 1
            self.begun.append(message.message_id)
        return counts

    def undo(self, messages: Sequence[Received]) -> None:
        for message in messages:
            self.open[message.message_id] -= 1

    def end(self, messages: Sequence[Received]) -> None:
        for message in messages:
            self.open.pop(message.message_id, None)
            self.ended.append(message.message_id)

    async def close(self) -> None:
        self.closed = True
