"""Pulsar source and sinks on pulsar-client's public API, bridged into asyncio once per batch.

- Receiving uses the consumer's batch-receive policy (maxBatchSize / maxDelayMs): the C++ client
  assembles the micro-batch and ``batch_receive`` runs in a thread (it releases the GIL), so the
  event loop wakes once per batch.
- Sending uses ``send_async``; the C++ callbacks count down and the last one of a batch wakes
  the loop. Producers batch for a few ms, as a stage publishes a whole micro-batch at once.
- Acks and nacks are non-blocking calls into the client (acks are grouped by the client).
- The consumer carries the stage's DeadLetterPolicy, so a message nacked more than
  ``maxRedeliveries`` times is moved to the dead-letter topic by the client even if the worker
  never got to dead-letter it itself; batch-index acks keep a restart from redelivering the
  already-acked messages of a producer batch (the broker must enable them too).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

import pulsar
import structlog

from streamvane_worker.config import SubscriptionType, WorkerConfig
from streamvane_worker.io.base import Outgoing, Received
from streamvane_worker.io.errors import PulsarError, PulsarUnavailable, from_pulsar, from_result

log = structlog.get_logger(__name__)

_CONSUMER_TYPES = {
    SubscriptionType.SHARED: pulsar.ConsumerType.Shared,
    SubscriptionType.KEY_SHARED: pulsar.ConsumerType.KeyShared,
    SubscriptionType.FAILOVER: pulsar.ConsumerType.Failover,
}

CONNECT_TIMEOUT_S = 10
PRODUCER_BATCH_DELAY_MS = 2
MAX_PENDING_SENDS = 10_000


def connect(config: WorkerConfig) -> pulsar.Client:
    token = config.pulsar.auth_token_file
    return pulsar.Client(
        config.pulsar.service_url,
        authentication=pulsar.AuthenticationToken(token.read_text().strip()) if token else None,
        operation_timeout_seconds=CONNECT_TIMEOUT_S,
        connection_timeout_ms=CONNECT_TIMEOUT_S * 1000,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
    )


class PulsarSource:
    def __init__(self, consumer: pulsar.Consumer) -> None:
        self._consumer = consumer

    @classmethod
    async def subscribe(cls, client: pulsar.Client, config: WorkerConfig) -> PulsarSource:
        settings, delivery, batching = config.input, config.delivery, config.batching
        try:
            consumer = await asyncio.to_thread(
                client.subscribe,
                settings.topic,
                settings.subscription,
                consumer_type=_CONSUMER_TYPES[settings.subscription_type],
                receiver_queue_size=settings.receiver_queue_size,
                negative_ack_redelivery_delay_ms=delivery.negative_ack_delay_ms,
                initial_position=pulsar.InitialPosition.Earliest,
                dead_letter_policy=pulsar.ConsumerDeadLetterPolicy(
                    max_redeliver_count=delivery.max_redeliveries,
                    dead_letter_topic=delivery.dead_letter_topic,
                ),
                batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(
                    batching.max_batch_size, -1, max(batching.max_delay_ms, 1)
                ),
                batch_index_ack_enabled=True,
                consumer_name=f"{config.pipeline}.{config.stage}",
            )
        except pulsar.PulsarException as e:
            raise PulsarUnavailable(
                f"cannot subscribe to {settings.topic} at {config.pulsar.service_url}: {e}"
            ) from e
        return cls(consumer)

    async def receive_batch(self) -> list[Received]:
        try:
            messages = await asyncio.to_thread(self._consumer.batch_receive)
        except pulsar.PulsarException as e:
            raise from_pulsar(e, what=f"receive from {self._consumer.topic()}") from e
        return [
            Received(
                payload=m.data(),
                message_id=str(m.message_id()),
                topic=m.topic_name(),
                redelivery_count=m.redelivery_count(),
                publish_time_ms=m.publish_timestamp(),
                properties=m.properties(),
                key=m.partition_key() or None,
                handle=m,
            )
            for m in messages
        ]

    def ack(self, messages: Sequence[Received]) -> None:
        for message in messages:
            self._settle(self._consumer.acknowledge, message)

    def nack(self, messages: Sequence[Received]) -> None:
        for message in messages:
            self._settle(self._consumer.negative_acknowledge, message)

    @staticmethod
    def _settle(operation: Callable[[pulsar.Message], None], message: Received) -> None:
        try:
            operation(message.handle)
        except pulsar.PulsarException as e:
            # Not fatal: the broker redelivers a message that was never settled.
            log.warning("settle_failed", message_id=message.message_id, error=str(e))

    def connected(self) -> bool:
        return bool(self._consumer.is_connected())

    async def close(self) -> None:
        try:
            await asyncio.to_thread(self._consumer.close)
        except pulsar.PulsarException as e:
            raise from_pulsar(e, what=f"close consumer on {self._consumer.topic()}") from e


class PulsarSink:
    def __init__(self, producer: pulsar.Producer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    @classmethod
    async def create(cls, client: pulsar.Client, topic: str, name: str) -> PulsarSink:
        try:
            producer = await asyncio.to_thread(
                client.create_producer,
                topic,
                batching_enabled=True,
                batching_max_publish_delay_ms=PRODUCER_BATCH_DELAY_MS,
                max_pending_messages=MAX_PENDING_SENDS,
                # Never block the event loop: in-flight batches bound pending sends far below.
                block_if_queue_full=False,
                properties={"streamvane-stage": name},
            )
        except pulsar.PulsarException as e:
            raise PulsarUnavailable(f"cannot create a producer on {topic}: {e}") from e
        return cls(producer, topic)

    async def send_batch(self, messages: Sequence[Outgoing]) -> list[PulsarError | None]:
        results: list[PulsarError | None] = [None] * len(messages)
        if not messages:
            return results
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        remaining = len(messages)
        lock = threading.Lock()
        what = f"send to {self.topic}"

        def settled(index: int, error: PulsarError | None) -> None:
            nonlocal remaining
            results[index] = error
            with lock:
                remaining -= 1
                last = remaining == 0
            if last:
                loop.call_soon_threadsafe(_resolve, done)

        def callback(index: int) -> Callable[[pulsar.Result, object], None]:
            def on_sent(result: pulsar.Result, _: object) -> None:
                settled(
                    index, None if result == pulsar.Result.Ok else from_result(result, what=what)
                )

            return on_sent

        for index, message in enumerate(messages):
            try:
                self._producer.send_async(
                    message.payload,
                    callback(index),
                    properties=message.properties,
                    partition_key=message.key,
                )
            except pulsar.PulsarException as e:
                settled(index, from_pulsar(e, what=what))
        await done
        return results

    def connected(self) -> bool:
        return bool(self._producer.is_connected())

    async def close(self) -> None:
        try:
            await asyncio.to_thread(self._producer.flush)
            await asyncio.to_thread(self._producer.close)
        except pulsar.PulsarException as e:
            raise from_pulsar(e, what=f"close producer on {self.topic}") from e


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
