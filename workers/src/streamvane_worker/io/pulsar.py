"""Pulsar source and sinks on pulsar-client's public API, bridged into asyncio once per batch.

- Receiving uses the consumer's batch-receive policy (maxBatchSize / maxDelayMs): the C++ client
  assembles the micro-batch and ``batch_receive`` runs in a thread (it releases the GIL), so the
  event loop wakes once per batch.
- Sending uses ``send_async``; the C++ callbacks count down and the last one of a batch wakes
  the loop. Producers batch for a few ms, as a stage publishes a whole micro-batch at once.
- Effectively-once outputs (``PulsarSink.create_sequenced``): one producer per input
  partition with a deterministic name, sending each message with the sequence id of its
  input position, unbatched and with no send timeout (the client resends in order after a
  reconnect instead of failing a message that later ones would overtake); see ``io.sequence``.
- Acks and nacks are non-blocking calls into the client (acks are grouped by the client).
- The consumer has no DeadLetterPolicy: the worker counts a message's own failures itself
  (``runtime.worker.deliveries``); the broker's redelivery count also grows when a worker dies
  holding prefetched messages. Batch-index acks keep a restart from redelivering the
  already-acked messages of a producer batch (the broker must enable them too); an ack
  timeout (``ackTimeoutMs``) redelivers anything left unsettled.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pulsar
import structlog

from streamvane_worker.config import SubscriptionType, WorkerConfig
from streamvane_worker.io.base import Outgoing, Received
from streamvane_worker.io.errors import (
    PulsarError,
    PulsarMisconfigured,
    PulsarUnavailable,
    from_pulsar,
    from_result,
)
from streamvane_worker.io.sequence import NON_PARTITIONED, Position, partition_of, producer_name

log = structlog.get_logger(__name__)

_CONSUMER_TYPES = {
    SubscriptionType.SHARED: pulsar.ConsumerType.Shared,
    SubscriptionType.KEY_SHARED: pulsar.ConsumerType.KeyShared,
    SubscriptionType.FAILOVER: pulsar.ConsumerType.Failover,
}

CONNECT_TIMEOUT_S = 10
ATTEMPT_WINDOW_S = 900.0
"""How far back the attempt journal is read at start, and how long an unfinished attempt is
remembered: a message whose worker died is redelivered within seconds, so crash counts only
need to survive the restarts of a crash loop."""
ATTEMPT_READ_TIMEOUT_MS = 500
ATTEMPT_BEGIN_TIMEOUT_S = 30.0
PRODUCER_BATCH_DELAY_MS = 2
MAX_PENDING_SENDS = 10_000
TLS_PORT = 6651
"""Pulsar's TLS port, when a pulsar+ssl:// URL names none."""


def connect(config: WorkerConfig) -> pulsar.Client:
    """A client for ``config.pulsar``. Raises PulsarMisconfigured when the token or CA file
    cannot be used or the broker's certificate is not trusted (an unreachable broker is not
    checked here: subscribing retries it)."""
    settings = config.pulsar
    token = TokenFile(settings.auth_token_file) if settings.auth_token_file else None
    tls = settings.service_url.startswith("pulsar+ssl://")
    if tls:
        check_broker_certificate(settings.service_url, settings.tls_ca_file)
    return pulsar.Client(
        settings.service_url,
        authentication=pulsar.AuthenticationToken(token) if token else None,
        tls_trust_certs_file_path=str(settings.tls_ca_file) if settings.tls_ca_file else None,
        tls_validate_hostname=tls,
        operation_timeout_seconds=CONNECT_TIMEOUT_S,
        connection_timeout_ms=CONNECT_TIMEOUT_S * 1000,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
    )


class TokenFile:
    """The token supplier handed to pulsar-client: it calls it whenever it authenticates (each
    new connection, and when the broker challenges a connection whose token expired), so a
    rotated Secret is picked up without a restart. The file is read each time; if it cannot be
    read (mid-rotation) the last token is returned, since an exception cannot cross the
    client's C++ callback."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._token = self._read()

    def __call__(self) -> str:
        try:
            self._token = self._read()
        except PulsarMisconfigured as e:
            log.warning("pulsar_token_unreadable", error=str(e))
        return self._token

    def _read(self) -> str:
        try:
            token = self.path.read_text().strip()
        except OSError as e:
            raise PulsarMisconfigured(f"cannot read the token file {self.path}: {e}") from e
        if not token:
            raise PulsarMisconfigured(f"the token file {self.path} is empty")
        expiry = _jwt_expiry(token)
        if expiry is not None and expiry <= time.time():
            when = datetime.fromtimestamp(expiry, UTC).isoformat()
            raise PulsarMisconfigured(f"the token in {self.path} expired at {when}")
        return token


def _jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (read, not verified: the broker verifies), if it has one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


def check_broker_certificate(service_url: str, ca_file: Path | None) -> None:
    """Handshake with the (first) broker of a ``pulsar+ssl://`` URL and verify its certificate
    and hostname, so an untrusted CA fails with that reason instead of the client's bare
    ConnectError. A broker that does not answer passes: subscribing retries it."""
    trusted = f"the CA in {ca_file}" if ca_file else "the system roots"
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as e:
        raise PulsarMisconfigured(f"cannot load the CA file {ca_file}: {e}") from e
    address = urlsplit(service_url.split(",")[0])
    host, port = address.hostname or "", address.port or TLS_PORT
    try:
        with (
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return
    except ssl.SSLCertVerificationError as e:
        raise PulsarMisconfigured(
            f"the broker at {host}:{port} presented a certificate that {trusted} does not "
            f"trust ({e.verify_message}): set the CA that signed it (spec.pulsar.tls.caSecretRef)"
        ) from e
    except OSError:
        return


class PulsarSource:
    def __init__(self, consumer: pulsar.Consumer) -> None:
        self._consumer = consumer

    @classmethod
    async def subscribe(
        cls, client: pulsar.Client, config: WorkerConfig, consumer_name: str
    ) -> PulsarSource:
        """Subscribe to the input and any side inputs under one subscription and one consumer
        name, unique per replica: Key_Shared's consistent-hash selector places a consumer on
        its ring by name, so equal consumer sets map a key to the same replica on every topic
        (same-named consumers would be told apart by arrival order, which differs per topic)."""
        settings, delivery, batching = config.input, config.delivery, config.batching
        side = list(config.side_inputs().values())
        try:
            consumer = await asyncio.to_thread(
                client.subscribe,
                [settings.topic, *side] if side else settings.topic,
                settings.subscription,
                consumer_type=_CONSUMER_TYPES[settings.subscription_type],
                receiver_queue_size=settings.receiver_queue_size,
                negative_ack_redelivery_delay_ms=delivery.negative_ack_delay_ms,
                initial_position=pulsar.InitialPosition.Earliest,
                batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(
                    batching.max_batch_size, -1, max(batching.max_delay_ms, 1)
                ),
                batch_index_ack_enabled=True,
                unacked_messages_timeout_ms=delivery.ack_timeout_ms,
                consumer_name=consumer_name,
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
        return [_received(m) for m in messages]

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
    """Publishes to one topic. ``producers`` maps an input partition to the producer that
    writes its outputs; a plain sink has one producer, under ANY_PARTITION, for all."""

    ANY_PARTITION = NON_PARTITIONED - 1

    def __init__(self, producers: Mapping[int, pulsar.Producer], topic: str) -> None:
        self._producers = dict(producers)
        self._sequenced = self.ANY_PARTITION not in self._producers
        self._broken: set[int] = set()
        """Sequenced partitions with a failed send: nothing more is sent on them, as a later
        sequence id written past a lost one would make the broker drop the lost one's
        resend (the worker stops and replays)."""
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
        return cls({cls.ANY_PARTITION: producer}, topic)

    @classmethod
    async def create_sequenced(
        cls, client: pulsar.Client, topic: str, config: WorkerConfig
    ) -> PulsarSink:
        """The effectively-once sink of ``topic``: a producer per partition of the input
        topic, named by ``producer_name``. Creating one fails (ProducerBusy) while another
        process still holds that name; the caller retries."""
        try:
            inputs = await asyncio.to_thread(client.get_topic_partitions, config.input.topic)
        except pulsar.PulsarException as e:
            raise PulsarUnavailable(f"cannot list partitions of {config.input.topic}: {e}") from e
        producers: dict[int, pulsar.Producer] = {}
        try:
            for partition in sorted({partition_of(t) for t in inputs}):
                name = producer_name(config.pipeline, config.stage, topic, partition)
                producers[partition] = await asyncio.to_thread(
                    client.create_producer,
                    topic,
                    producer_name=name,
                    batching_enabled=False,
                    send_timeout_millis=0,
                    max_pending_messages=MAX_PENDING_SENDS,
                    block_if_queue_full=False,
                    properties={"streamvane-stage": f"{config.pipeline}.{config.stage}"},
                )
                # No initial sequence id: every message carries its own; the broker tells
                # the producer the highest it persisted under this name.
                log.info(
                    "producer_resumes",
                    topic=topic,
                    producer=name,
                    last_sequence_id=producers[partition].last_sequence_id(),
                )
        except pulsar.PulsarException as e:
            for producer in producers.values():
                await asyncio.to_thread(producer.close)
            raise PulsarUnavailable(f"cannot create producer {name} on {topic}: {e}") from e
        return cls(producers, topic)

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

        def callback(index: int, lane: int) -> Callable[[pulsar.Result, object], None]:
            def on_sent(result: pulsar.Result, _: object) -> None:
                if result != pulsar.Result.Ok and self._sequenced:
                    self._broken.add(lane)
                settled(
                    index, None if result == pulsar.Result.Ok else from_result(result, what=what)
                )

            return on_sent

        for index, message in enumerate(messages):
            lane = message.partition if self._sequenced else self.ANY_PARTITION
            producer = self._producers.get(lane)
            if producer is None or lane in self._broken:
                # No producer: partitions were added to the input since the start, and a
                # restart creates theirs.
                why = "an earlier send failed" if producer else "no producer"
                settled(index, PulsarUnavailable(f"{what} (partition {lane}): {why}"))
                continue
            try:
                producer.send_async(
                    message.payload,
                    callback(index, lane),
                    properties=message.properties,
                    partition_key=message.key,
                    sequence_id=message.sequence_id,
                    deliver_after=timedelta(milliseconds=message.deliver_after_ms)
                    if message.deliver_after_ms
                    else None,
                )
            except pulsar.PulsarException as e:
                if self._sequenced:
                    self._broken.add(lane)
                settled(index, from_pulsar(e, what=what))
        await done
        return results

    def connected(self) -> bool:
        return all(p.is_connected() for p in self._producers.values())

    async def close(self) -> None:
        try:
            for producer in self._producers.values():
                await asyncio.to_thread(producer.flush)
                await asyncio.to_thread(producer.close)
        except pulsar.PulsarException as e:
            raise from_pulsar(e, what=f"close producer on {self.topic}") from e


class PulsarAttemptLog:
    """The attempt journal on a topic of its own: one entry per batch, ``{"begin": [ids],
    "nonce": n}`` before the batch is worked on and ``{"end": [ids]}`` once it is settled
    (``{"undo": [ids]}`` takes one begun attempt back).

    Every replica tails the journal with a reader (from ``ATTEMPT_WINDOW_S`` ago at start) and
    keeps the message ids whose attempts began and never ended, with how many. ``begin``
    publishes its entry and waits until its own reader reaches it, so the count it returns
    includes every attempt journaled before (by any replica, including one that just died:
    it persisted its entry before it touched the message). Memory holds only open attempts.
    """

    def __init__(self, producer: pulsar.Producer, reader: pulsar.Reader, topic: str) -> None:
        self._producer = producer
        self._reader = reader
        self.topic = topic
        self._open: dict[str, tuple[int, int]] = {}
        """message id -> (attempts begun and not ended, publish time (ms) of the latest)."""
        self._waiters: dict[str, tuple[list[str], asyncio.Future[list[int]]]] = {}
        self._entries = 0
        self._closing = False
        self._tail: asyncio.Task[None] | None = None

    @classmethod
    async def create(cls, client: pulsar.Client, topic: str, name: str) -> PulsarAttemptLog:
        try:
            producer = await asyncio.to_thread(
                client.create_producer,
                topic,
                # Each batch waits for its entry's read-back: no producer batching delay.
                batching_enabled=False,
                block_if_queue_full=False,
                properties={"streamvane-stage": name},
            )
            reader = await asyncio.to_thread(client.create_reader, topic, pulsar.MessageId.earliest)
            since_ms = int((time.time() - ATTEMPT_WINDOW_S) * 1000)
            await asyncio.to_thread(reader.seek, since_ms)
        except pulsar.PulsarException as e:
            raise PulsarUnavailable(f"cannot open the attempt journal {topic}: {e}") from e
        journal = cls(producer, reader, topic)
        journal._tail = asyncio.create_task(journal._follow(), name="attempt-journal")
        return journal

    async def begin(self, messages: Sequence[Received]) -> list[int]:
        ids = [m.message_id for m in messages]
        nonce = uuid.uuid4().hex
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._waiters[nonce] = (ids, future)
        try:
            entry = json.dumps({"begin": ids, "nonce": nonce}).encode()
            await self._send(entry)
            return await asyncio.wait_for(asyncio.shield(future), ATTEMPT_BEGIN_TIMEOUT_S)
        except TimeoutError as e:
            raise PulsarUnavailable(f"attempt journal {self.topic} not read back in time") from e
        finally:
            self._waiters.pop(nonce, None)

    def undo(self, messages: Sequence[Received]) -> None:
        self._note("undo", messages)

    def end(self, messages: Sequence[Received]) -> None:
        self._note("end", messages)

    def _note(self, kind: str, messages: Sequence[Received]) -> None:
        if not messages or self._closing:
            return
        entry = json.dumps({kind: [m.message_id for m in messages]}).encode()
        try:
            self._producer.send_async(entry, lambda result, _: None)
        except pulsar.PulsarException as e:
            log.warning("attempt_end_not_journaled", error=str(e))

    async def _send(self, payload: bytes) -> None:
        loop = asyncio.get_running_loop()
        sent: asyncio.Future[pulsar.Result] = loop.create_future()

        def on_sent(result: pulsar.Result, _: object) -> None:
            loop.call_soon_threadsafe(_set_result, sent, result)

        try:
            self._producer.send_async(payload, on_sent)
        except pulsar.PulsarException as e:
            raise from_pulsar(e, what=f"journal to {self.topic}") from e
        result = await sent
        if result != pulsar.Result.Ok:
            raise from_result(result, what=f"journal to {self.topic}")

    async def _follow(self) -> None:
        while not self._closing:
            try:
                message = await asyncio.to_thread(self._reader.read_next, ATTEMPT_READ_TIMEOUT_MS)
            except pulsar.Timeout:
                continue
            except pulsar.PulsarException as e:
                if self._closing:
                    return
                log.warning("attempt_journal_read_failed", error=str(e))
                await asyncio.sleep(1.0)
                continue
            self._apply(message.data(), message.publish_timestamp())

    def _apply(self, data: bytes, published_ms: int) -> None:
        try:
            entry = json.loads(data)
            begun: list[str] = entry.get("begin", [])
            undone: list[str] = entry.get("undo", [])
            ended: list[str] = entry.get("end", [])
        except (ValueError, AttributeError):
            log.warning("attempt_journal_entry_ignored", size=len(data))
            return
        waiter = self._waiters.get(str(entry.get("nonce")))
        if waiter is not None and not waiter[1].done():
            waiter[1].set_result([self._open.get(i, (0, 0))[0] for i in waiter[0]])
        for message_id in begun:
            self._open[message_id] = (self._open.get(message_id, (0, 0))[0] + 1, published_ms)
        for message_id in undone:
            count, published = self._open.get(message_id, (0, 0))
            if count > 1:
                self._open[message_id] = (count - 1, published)
            else:
                self._open.pop(message_id, None)
        for message_id in ended:
            self._open.pop(message_id, None)
        self._entries += 1
        if self._entries % 1000 == 0:
            oldest = int((time.time() - ATTEMPT_WINDOW_S) * 1000)
            self._open = {k: v for k, v in self._open.items() if v[1] >= oldest}

    async def close(self) -> None:
        self._closing = True
        if self._tail is not None:
            await asyncio.gather(self._tail, return_exceptions=True)
        try:
            await asyncio.to_thread(self._producer.flush)
            await asyncio.to_thread(self._producer.close)
            await asyncio.to_thread(self._reader.close)
        except pulsar.PulsarException as e:
            raise from_pulsar(e, what=f"close the attempt journal {self.topic}") from e


def _received(message: pulsar.Message) -> Received:
    message_id = message.message_id()
    return Received(
        payload=message.data(),
        message_id=str(message_id),
        topic=message.topic_name(),
        redelivery_count=message.redelivery_count(),
        publish_time_ms=message.publish_timestamp(),
        properties=message.properties(),
        key=message.partition_key() or None,
        handle=message,
        position=_position(message_id),
    )


def _position(message_id: pulsar.MessageId) -> Position:
    return Position(
        partition=message_id.partition(),
        ledger_id=message_id.ledger_id(),
        entry_id=message_id.entry_id(),
        batch_index=message_id.batch_index(),
    )


def _set_result(future: asyncio.Future[pulsar.Result], result: pulsar.Result) -> None:
    if not future.done():
        future.set_result(result)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
