"""Topics a stage reads whole beside its input, with a ``Reader`` (no subscription, nothing
acked): the catalogue, model-version announcements.

``catch_up`` reads to the end before a stage starts; ``follow`` keeps reading on the event loop
afterwards, so what a subclass applies is only ever changed from the loop (no locks needed).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

import structlog

from streamvane_worker.io.base import Reader, Record
from streamvane_worker.io.errors import PulsarError

log = structlog.get_logger(__name__)

READ_MAX = 1000
FOLLOW_WAIT_MS = 200
RETRY_S = 1.0


class FollowedTopic(ABC):
    def __init__(self, reader: Reader, position: bytes | None = None) -> None:
        """``position``: where ``reader`` was opened, for state restored from a snapshot."""
        self._reader = reader
        self.position = position
        """Of the last record applied: a reader opened after it misses nothing."""
        self._reading = asyncio.Lock()  # one read at a time: follow and catch_up share a reader

    @abstractmethod
    def apply(self, record: Record) -> None:
        """Take one record, in topic order."""

    async def catch_up(self) -> int:
        """Apply everything published so far; returns how many records were read."""
        total = 0
        while records := await self._read(0):
            total += len(records)
        return total

    async def follow(self) -> None:
        """Apply changes as they arrive, until cancelled."""
        while True:
            try:
                await self._read(FOLLOW_WAIT_MS)
            except PulsarError as e:
                log.warning("follow_read_failed", what=type(self).__name__, error=str(e))
                await asyncio.sleep(RETRY_S)

    async def _read(self, wait_ms: int) -> list[Record]:
        async with self._reading:
            records = await self._reader.read_available(READ_MAX, wait_ms)
            for record in records:
                self.apply(record)
                self.position = record.position
        return records

    async def close(self) -> None:
        await self._reader.close()


class Following:
    """The task that runs ``FollowedTopic.follow``; closing cancels it and closes the reader."""

    def __init__(self, followed: FollowedTopic) -> None:
        self._followed = followed
        self._task = asyncio.create_task(
            followed.follow(), name=f"follow-{type(followed).__name__}"
        )

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._followed.close()
