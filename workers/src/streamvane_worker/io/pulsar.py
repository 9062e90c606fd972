"""Pulsar source and sinks on pulsar-client's asyncio API.

The consumer carries the stage's DeadLetterPolicy, so a message the worker nacks more than
``maxRedeliveries`` times is moved to the dead-letter topic by the client even if the worker
never gets to dead-letter it itself. Producers batch (a few ms) because a stage publishes a
micro-batch at once and awaits all broker receipts together.
"""

from __future__ import annotations

import pulsar
from pulsar.asyncio import Client, Consumer, Producer, PulsarException

from streamvane_worker.config import SubscriptionType, WorkerConfig
from streamvane_worker.io.base import Received
from streamvane_worker.io.errors import PulsarUnavailable, from_pulsar

_CONSUMER_TYPES = {
    SubscriptionType.SHARED: pulsar.ConsumerType.Shared,
    SubscriptionType.KEY_SHARED: pulsar.ConsumerType.KeyShared,
    SubscriptionType.FAILOVER: pulsar.ConsumerType.Failover,
}

CONNECT_TIMEOUT_S = 10
PRODUCER_BATCH_DELAY_MS = 2


def connect(config: WorkerConfig) -> Client:
    token = config.pulsar.auth_token_file
    return Client(
        config.pulsar.service_url,
        authentication=pulsar.AuthenticationToken(token.read_text().strip()) if token else None,
        operation_timeout_seconds=CONNECT_TIMEOUT_S,
        connection_timeout_ms=CONNECT_TIMEOUT_S * 1000,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
    )


class PulsarSource:
    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer

    @classmethod
    async def subscribe(cls, client: Client, config: WorkerConfig) -> PulsarSource:
        settings, delivery = config.input, config.delivery
        try:
            consumer = await client.subscribe(
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
                consumer_name=f"{config.pipeline}.{config.stage}",
                # Producers batch; without batch-index acks a partly acked batch is redelivered
                # whole on restart, duplicating every result already published from it.
                batch_index_ack_enabled=True,
            )
        except PulsarException as e:
            raise PulsarUnavailable(
                f"cannot subscribe to {settings.topic} at {config.pulsar.service_url}: {e}"
            ) from e
        return cls(consumer)

    async def receive(self) -> Received:
        try:
            msg = await self._consumer.receive()
        except PulsarException as e:
            raise from_pulsar(e, what=f"receive from {self._consumer.topic()}") from e
        return Received(
            payload=msg.data(),
            message_id=str(msg.message_id()),
            topic=msg.topic_name(),
            redelivery_count=msg.redelivery_count(),
            publish_time_ms=msg.publish_timestamp(),
            properties=dict(msg.properties()),
            key=msg.partition_key() or None,
            handle=msg,
        )

    async def ack(self, message: Received) -> None:
        try:
            await self._consumer.acknowledge(message.handle)
        except PulsarException as e:
            raise from_pulsar(e, what=f"ack {message.message_id}") from e

    async def nack(self, message: Received) -> None:
        try:
            await self._consumer.negative_acknowledge(message.handle)
        except PulsarException as e:
            raise from_pulsar(e, what=f"nack {message.message_id}") from e

    def connected(self) -> bool:
        # The asyncio wrapper does not expose is_connected(); the wrapped consumer does.
        return bool(self._consumer._consumer.is_connected())

    async def close(self) -> None:
        try:
            await self._consumer.close()
        except PulsarException as e:
            raise from_pulsar(e, what=f"close consumer on {self._consumer.topic()}") from e


class PulsarSink:
    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    @classmethod
    async def create(cls, client: Client, topic: str, name: str) -> PulsarSink:
        try:
            producer = await client.create_producer(
                topic,
                batching_enabled=True,
                batching_max_publish_delay_ms=PRODUCER_BATCH_DELAY_MS,
                max_pending_messages=10_000,
                block_if_queue_full=True,
                properties={"streamvane-stage": name},
            )
        except PulsarException as e:
            raise PulsarUnavailable(f"cannot create a producer on {topic}: {e}") from e
        return cls(producer, topic)

    async def send(self, payload: bytes, properties: dict[str, str], key: str | None) -> None:
        try:
            await self._producer.send(payload, properties=properties, partition_key=key)
        except PulsarException as e:
            raise from_pulsar(e, what=f"send to {self.topic}") from e

    def connected(self) -> bool:
        return bool(self._producer.is_connected())

    async def close(self) -> None:
        try:
            await self._producer.flush()
            await self._producer.close()
        except PulsarException as e:
            raise from_pulsar(e, what=f"close producer on {self.topic}") from e
