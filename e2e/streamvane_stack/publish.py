"""Publishing test and benchmark input to the stack's Pulsar, every message or an error.

``send_async`` with the client's defaults drops what does not fit its 1,000-message queue
(the callback gets ProducerQueueIsFull), so a burst bigger than that lost its tail silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pulsar


class PublishFailed(RuntimeError):
    """Some messages were not accepted by the broker."""


def send_all(
    client: pulsar.Client, topic: str, payloads: Iterable[bytes], *, batching: bool = False
) -> int:
    """Send every payload to ``topic`` (waiting while the producer's queue is full) and
    return how many; raise PublishFailed if the broker refused any. Unbatched by default, as
    the client's producers are: the broker counts a backlog in entries, so a batch of many
    messages reads as one."""
    producer = client.create_producer(topic, batching_enabled=batching, block_if_queue_full=True)
    failures: list[pulsar.Result] = []

    def on_sent(result: pulsar.Result, _: pulsar.MessageId) -> None:
        if result != pulsar.Result.Ok:
            failures.append(result)

    count = 0
    try:
        for payload in payloads:
            producer.send_async(payload, on_sent)
            count += 1
        producer.flush()
    finally:
        producer.close()
    if failures:
        raise PublishFailed(f"{len(failures)} of {count} messages to {topic}: {failures[0]}")
    return count


def send_json(
    client: pulsar.Client, topic: str, docs: Iterable[dict[str, Any]], *, batching: bool = False
) -> int:
    """``send_all`` of each document as one JSON message."""
    return send_all(client, topic, (json.dumps(d).encode() for d in docs), batching=batching)
