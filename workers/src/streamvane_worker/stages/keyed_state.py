"""Keyed state in memory, checkpointed to a compacted Pulsar topic keyed the same way.

- ``rebuild`` reads the whole state topic (compacted: about one message per key) before the
  stage starts, so a restarted replica resumes where the last checkpoint left every key.
- ``commit`` writes the new values of a batch's keys and only once the broker persisted them
  does it install them in memory; the stage returns its outputs (and the runtime acks the
  input) after that, so an input is never acked before its effect on the state is durable.
- ``catch_up`` applies checkpoints other replicas wrote since (read before each batch): when a
  scale change moves a key here, Key_Shared delivers its next message only after the previous
  owner acked — that is, checkpointed — the ones before, so the newest state is on the topic.
  Each checkpoint carries its writer and version in properties: our own are skipped without
  being parsed, and an older version never replaces a newer one.
- ``commit`` also deletes keys: an empty checkpoint (a tombstone, which compaction removes)
  with the next version; a replica reading one drops the key.
- Ownership: a key is ours when we installed it by ``commit`` or by ``rebuild`` (a starting
  replica cannot tell whose a key is), and stops being ours when a newer checkpoint of another
  replica is caught up (Key_Shared moved its messages there). Stages acting on keys without an
  input message (closing a window) act only on ``owned`` keys.
- Memory is bounded: at most ``max_entries`` keys (least recently used evicted first) and none
  idle longer than ``ttl_s``; entries, bytes and evictions are exported as metrics.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from streamvane_worker.inference.errors import BackendUnavailable
from streamvane_worker.io.base import Outgoing, Reader, Record, Sink

log = structlog.get_logger(__name__)

S = TypeVar("S")

WRITER_PROPERTY = "streamvane-state-writer"
VERSION_PROPERTY = "streamvane-state-version"
READ_MAX = 1000


class StateUnavailable(BackendUnavailable):
    """A checkpoint could not be persisted: the batch is negatively acknowledged."""


@dataclass(frozen=True)
class Codec(Generic[S]):
    encode: Callable[[S], bytes]
    decode: Callable[[bytes], S]
    version: Callable[[S], int]


@dataclass
class _Entry(Generic[S]):
    value: S
    version: int
    size: int
    touched: float
    own: bool


@dataclass(frozen=True)
class StateMetrics:
    entries: Gauge
    bytes: Gauge
    evictions: dict[str, Counter]
    """By reason: ``capacity`` (max entries) or ``ttl`` (idle too long)."""

    @classmethod
    def create(cls, registry: CollectorRegistry | None, pipeline: str, stage: str) -> StateMetrics:
        labels = ["pipeline", "stage"]
        evictions = Counter(
            "streamvane_worker_state_evictions",
            "Keys dropped from memory (capacity: max entries; ttl: idle too long).",
            [*labels, "reason"],
            registry=registry,
        )
        return cls(
            entries=Gauge(
                "streamvane_worker_state_entries",
                "Keys held in memory.",
                labels,
                registry=registry,
            ).labels(pipeline, stage),
            bytes=Gauge(
                "streamvane_worker_state_bytes",
                "Checkpoint bytes of the keys held in memory.",
                labels,
                registry=registry,
            ).labels(pipeline, stage),
            evictions={
                reason: evictions.labels(pipeline, stage, reason) for reason in ("capacity", "ttl")
            },
        )


class KeyedState(Generic[S]):
    def __init__(
        self,
        reader: Reader,
        sink: Sink,
        codec: Codec[S],
        *,
        identity: str,
        max_entries: int,
        ttl_s: float,
        metrics: StateMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._sink = sink
        self._codec = codec
        self._identity = identity
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._m = metrics
        self._clock = clock
        self._entries: OrderedDict[str, _Entry[S]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def owned(self) -> list[tuple[str, S]]:
        """The keys this replica owns with their values (see the module docstring)."""
        return [(key, entry.value) for key, entry in self._entries.items() if entry.own]

    def is_owned(self, key: str) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.own

    def get(self, key: str) -> S | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        entry.touched = self._clock()
        self._entries.move_to_end(key)
        return entry.value

    async def rebuild(self) -> int:
        """Load every key's newest checkpoint, our own included; returns records read."""
        total = 0
        while records := await self._reader.read_available(READ_MAX, 0):
            for record in records:
                self._apply(record, skip_own=False)
            total += len(records)
        self._evict()
        log.info("state_rebuilt", records=total, keys=len(self._entries), bytes=self._bytes)
        return total

    async def catch_up(self) -> None:
        """Apply the checkpoints other replicas wrote since the last read."""
        while records := await self._reader.read_available(READ_MAX, 0):
            for record in records:
                self._apply(record, skip_own=True)
        self._evict()

    async def commit(self, values: Mapping[str, S | None]) -> None:
        """Checkpoint ``values`` (None: delete the key) and, once persisted, install them.
        Raises StateUnavailable."""
        if not values:
            return
        versions = {
            key: self._codec.version(value) if value is not None else self._next_version(key)
            for key, value in values.items()
        }
        encoded = {
            key: self._codec.encode(value) if value is not None else b""
            for key, value in values.items()
        }
        outgoing = [
            Outgoing(
                payload,
                {WRITER_PROPERTY: self._identity, VERSION_PROPERTY: str(versions[key])},
                key,
            )
            for key, payload in encoded.items()
        ]
        results = await self._sink.send_batch(outgoing)
        errors = [e for e in results if e is not None]
        if errors:
            raise StateUnavailable(f"checkpoint to {self._sink.topic} failed: {errors[0]}")
        for key, value in values.items():
            if value is None:
                self._remove(key)
            else:
                self._install(key, value, versions[key], len(encoded[key]), own=True)
        self._evict()

    def _next_version(self, key: str) -> int:
        entry = self._entries.get(key)
        return entry.version + 1 if entry is not None else 1

    def _apply(self, record: Record, *, skip_own: bool) -> None:
        if record.key is None:
            return
        if skip_own and record.properties.get(WRITER_PROPERTY) == self._identity:
            return
        current = self._entries.get(record.key)
        version = int(record.properties.get(VERSION_PROPERTY, "0"))
        if current is not None and current.version >= version:
            return
        if not record.payload:  # a tombstone: the key was deleted
            self._remove(record.key)
            return
        try:
            value = self._codec.decode(record.payload)
        except ValueError as e:
            log.warning("state_record_skipped", key=record.key, error=str(e)[:200])
            return
        self._install(
            record.key, value, self._codec.version(value), len(record.payload), own=not skip_own
        )

    def _install(self, key: str, value: S, version: int, size: int, *, own: bool) -> None:
        self._remove(key)
        self._entries[key] = _Entry(value, version, size, self._clock(), own)
        self._bytes += size

    def _remove(self, key: str) -> None:
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._bytes -= previous.size

    def _evict(self) -> None:
        cutoff = self._clock() - self._ttl_s
        while self._entries:
            key, oldest = next(iter(self._entries.items()))
            if len(self._entries) > self._max_entries:
                reason = "capacity"
            elif oldest.touched < cutoff:
                reason = "ttl"
            else:
                break
            del self._entries[key]
            self._bytes -= oldest.size
            self._m.evictions[reason].inc()
        self._m.entries.set(len(self._entries))
        self._m.bytes.set(self._bytes)

    async def close(self) -> None:
        await self._reader.close()
        await self._sink.close()
