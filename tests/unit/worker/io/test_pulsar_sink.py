"""PulsarSink's routing and its effectively-once rule, over stand-in producers (no network)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulsar

from streamvane_worker.io.base import Outgoing
from streamvane_worker.io.errors import PulsarUnavailable
from streamvane_worker.io.pulsar import PulsarSink


class StandInProducer:
    """Answers each send at once with the next result of ``results`` (Ok when exhausted)."""

    def __init__(self, *results: pulsar.Result) -> None:
        self.results = list(results)
        self.sent: list[tuple[bytes, int | None]] = []

    def send_async(
        self, content: bytes, callback: Callable[[pulsar.Result, Any], None], **kwargs: Any
    ) -> None:
        self.sent.append((content, kwargs.get("sequence_id")))
        callback(self.results.pop(0) if self.results else pulsar.Result.Ok, None)

    def is_connected(self) -> bool:
        return True


def out(payload: bytes, partition: int, sequence_id: int) -> Outgoing:
    return Outgoing(payload, {}, None, sequence_id=sequence_id, partition=partition)


async def test_sink_sends_each_output_on_its_partitions_producer_with_its_sequence_id() -> None:
    first, second = StandInProducer(), StandInProducer()
    sink = PulsarSink({0: first, 1: second}, "persistent://t/n/out")  # type: ignore[dict-item]

    results = await sink.send_batch([out(b"a", 0, 10), out(b"b", 1, 11), out(b"c", 0, 12)])

    assert results == [None, None, None]
    assert first.sent == [(b"a", 10), (b"c", 12)] and second.sent == [(b"b", 11)]


async def test_sink_sends_nothing_more_on_a_partition_when_one_of_its_sends_failed() -> None:
    broken, fine = StandInProducer(pulsar.Result.Timeout), StandInProducer()
    sink = PulsarSink({0: broken, 1: fine}, "persistent://t/n/out")  # type: ignore[dict-item]

    results = await sink.send_batch([out(b"a", 0, 1), out(b"b", 0, 2), out(b"c", 1, 3)])
    later = await sink.send_batch([out(b"d", 0, 4)])

    assert isinstance(results[0], PulsarUnavailable) and isinstance(results[1], PulsarUnavailable)
    assert results[2] is None and isinstance(later[0], PulsarUnavailable)
    assert broken.sent == [(b"a", 1)], "nothing may overtake the failed send"


async def test_sink_fails_the_output_when_its_partition_has_no_producer() -> None:
    sink = PulsarSink({0: StandInProducer()}, "persistent://t/n/out")  # type: ignore[dict-item]

    (result,) = await sink.send_batch([out(b"a", 3, 1)])

    assert isinstance(result, PulsarUnavailable) and "no producer" in str(result)


async def test_sink_keeps_sending_after_a_failure_when_not_effectively_once() -> None:
    producer = StandInProducer(pulsar.Result.Timeout)
    sink = PulsarSink({PulsarSink.ANY_PARTITION: producer}, "t")  # type: ignore[dict-item]

    first = await sink.send_batch([Outgoing(b"a", {}, None)])
    second = await sink.send_batch([Outgoing(b"b", {}, None)])

    assert isinstance(first[0], PulsarUnavailable) and second == [None]
