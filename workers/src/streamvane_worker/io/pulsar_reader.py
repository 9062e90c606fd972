"""``Reader`` on pulsar-client's reader API: compacted reads, resumable from a position.

A batch is read in one thread hop (``read_next`` releases the GIL), like the source's batch
receive. ``has_message_available`` asks the broker whether the reader is at the end, so a
caller can tell "caught up" from "nothing arrived yet".
"""

from __future__ import annotations

import asyncio

import pulsar

from streamvane_worker.io.base import Record
from streamvane_worker.io.errors import PulsarUnavailable, from_pulsar


class PulsarReader:
    def __init__(self, reader: pulsar.Reader, topic: str) -> None:
        self._reader = reader
        self._topic = topic

    @classmethod
    async def open(
        cls, client: pulsar.Client, topic: str, after: bytes | None, name: str
    ) -> PulsarReader:
        start = pulsar.MessageId.deserialize(after) if after else pulsar.MessageId.earliest
        try:
            reader = await asyncio.to_thread(
                client.create_reader,
                topic,
                start,
                reader_name=name,
                is_read_compacted=True,
            )
        except pulsar.PulsarException as e:
            raise PulsarUnavailable(f"cannot open a reader on {topic}: {e}") from e
        return cls(reader, topic)

    async def read_available(self, max_records: int, wait_ms: int) -> list[Record]:
        try:
            return await asyncio.to_thread(self._read, max_records, wait_ms)
        except pulsar.PulsarException as e:
            raise from_pulsar(e, what=f"read from {self._topic}") from e

    def _read(self, max_records: int, wait_ms: int) -> list[Record]:
        records: list[Record] = []
        if wait_ms > 0 and not self._reader.has_message_available():
            try:
                records.append(_record(self._reader.read_next(wait_ms)))
            except pulsar.Timeout:
                return records
        while len(records) < max_records and self._reader.has_message_available():
            records.append(_record(self._reader.read_next()))
        return records

    async def close(self) -> None:
        try:
            await asyncio.to_thread(self._reader.close)
        except pulsar.PulsarException as e:
            raise from_pulsar(e, what=f"close reader on {self._topic}") from e


def _record(message: pulsar.Message) -> Record:
    return Record(
        key=message.partition_key() or None,
        payload=message.data(),
        position=message.message_id().serialize(),
        properties=message.properties(),
    )
