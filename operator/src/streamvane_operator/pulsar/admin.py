"""A small Pulsar admin REST (v2) client: what the operator needs, nothing more.

Transient failures (connection, timeouts, 5xx) are retried with backoff, then raised as
``PulsarUnavailable``; everything else becomes a ``PulsarRejected`` subclass.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from streamvane_operator.pulsar.entries import entry_payloads
from streamvane_operator.pulsar.errors import (
    PulsarConflict,
    PulsarError,
    PulsarIncompatibleSchema,
    PulsarMisconfigured,
    PulsarNotFound,
    PulsarRejected,
    PulsarUnavailable,
    from_response,
    from_transport,
)

EARLIEST = {"ledgerId": -1, "entryId": -1, "partitionIndex": -1}
"""MessageId.earliest as the REST API takes it: a new subscription starts at the oldest message."""
LATEST = {"ledgerId": 2**63 - 1, "entryId": 2**63 - 1, "partitionIndex": -1}
"""MessageId.latest: a new subscription starts after the newest message."""

PARTITION_MARKER = "-partition-"
PARTITIONED_METADATA = "application/vnd.partitioned-topic-metadata+json"
"""The media type under which Pulsar takes a partitioned topic's partitions and properties."""

PRECONDITION_FAILED = 412
"""Pulsar's answer to deleting a subscription that still has consumers connected."""

RequestObserver = Callable[[str, str, str, float], None]
"""Called after every admin request with (method, path, HTTP status or "error", seconds)."""
REDIRECTS = frozenset({307, 308})
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Retention:
    minutes: int
    size_mb: int


@dataclass(frozen=True)
class SubscriptionStats:
    backlog: int
    """Messages not yet acknowledged."""
    consumers: int
    """Consumers connected now."""
    rate_in: float = 0.0
    """Messages per second published to the topic (msgRateIn)."""
    rate_out: float = 0.0
    """Messages per second dispatched to this subscription's consumers (msgRateOut)."""
    earliest_backlog_ms: int | None = None
    """Publish time (epoch ms) of the oldest unacknowledged message; None without backlog."""


@dataclass(frozen=True)
class RegisteredSchema:
    """The latest version of a topic's schema in Pulsar's registry."""

    version: int
    type: str
    """Pulsar's schema type: JSON, AVRO, STRING, ..."""
    definition: str
    """The schema data: for JSON and AVRO, an Avro record in JSON."""


@dataclass(frozen=True)
class TopicName:
    """``persistent://tenant/namespace/local``."""

    tenant: str
    namespace: str
    local: str

    @classmethod
    def parse(cls, name: str) -> TopicName:
        scheme, _, rest = name.partition("://")
        parts = rest.split("/")
        if scheme != "persistent" or len(parts) != 3 or not all(parts):
            raise ValueError(f"not a persistent topic name: {name!r}")
        return cls(*parts)

    @property
    def path(self) -> str:
        return f"/admin/v2/persistent/{self.tenant}/{self.namespace}/{quote(self.local, safe='')}"

    @property
    def schema_path(self) -> str:
        """Where the registry keeps the topic's schema (one for all partitions)."""
        return f"/admin/v2/schemas/{self.tenant}/{self.namespace}/{quote(self.local, safe='')}"

    def __str__(self) -> str:
        return f"persistent://{self.tenant}/{self.namespace}/{self.local}"


def canonical(avro_record: dict[str, Any]) -> str:
    """The one form a schema is sent in: the registry compares schemas byte for byte."""
    return json.dumps(avro_record, sort_keys=True, separators=(",", ":"))


class PulsarAdmin:
    """``token``: a JWT sent as a bearer token; ``ca``: PEM bundle that signed the brokers'
    certificates (https), else the system roots."""

    def __init__(
        self,
        admin_url: str,
        *,
        token: str | None = None,
        ca: str | None = None,
        timeout_s: float = 10.0,
        attempts: int = 3,
        max_backoff_s: float = 2.0,
        transport: httpx.BaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self._observer = observer
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.admin_url = admin_url.rstrip("/")
        self._scheme = httpx.URL(self.admin_url).scheme
        try:
            verify = ssl.create_default_context(cadata=ca) if ca else True
        except (ssl.SSLError, ValueError) as e:
            raise PulsarMisconfigured(f"the CA bundle for {self.admin_url} is not PEM: {e}") from e
        self._http = httpx.Client(
            base_url=self.admin_url,
            headers=headers,
            timeout=timeout_s,
            transport=transport,
            verify=verify,
        )
        self._retrying = Retrying(
            retry=retry_if_exception_type(PulsarUnavailable),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.2, max=max_backoff_s),
            reraise=True,
        )

    def close(self) -> None:
        self._http.close()

    # tenants and namespaces

    def clusters(self) -> list[str]:
        return list(self._json("GET", "/admin/v2/clusters", "list clusters"))

    def tenants(self) -> list[str]:
        return list(self._json("GET", "/admin/v2/tenants", "list tenants"))

    def create_tenant(self, tenant: str, clusters: list[str]) -> None:
        body = {"allowedClusters": clusters, "adminRoles": []}
        self._ignore_conflict("PUT", f"/admin/v2/tenants/{tenant}", f"create tenant {tenant}", body)

    def namespaces(self, tenant: str) -> list[str]:
        """Namespaces of ``tenant`` as ``tenant/namespace``."""
        return list(self._json("GET", f"/admin/v2/namespaces/{tenant}", "list namespaces"))

    def create_namespace(self, tenant: str, namespace: str) -> None:
        self._ignore_conflict(
            "PUT",
            f"/admin/v2/namespaces/{tenant}/{namespace}",
            f"create namespace {tenant}/{namespace}",
        )

    # topics

    def topics(self, tenant: str, namespace: str) -> dict[str, int]:
        """Local topic name -> partitions (0: non-partitioned) of every topic in the namespace."""
        base = f"/admin/v2/persistent/{tenant}/{namespace}"
        found: dict[str, int] = {}
        for name in self._json("GET", f"{base}/partitioned", "list partitioned topics"):
            local = TopicName.parse(name).local
            found[local] = self.partitions(TopicName.parse(name))
        for name in self._json("GET", base, "list topics"):
            local = TopicName.parse(name).local
            if PARTITION_MARKER not in local or local.split(PARTITION_MARKER)[0] not in found:
                found.setdefault(local, 0)
        return found

    def topic_names(self, tenant: str, namespace: str) -> set[str]:
        """Local names of the namespace's topics in one call (a partitioned topic under its
        own name, from its partitions); existence only, no partition counts."""
        listed = self._json("GET", f"/admin/v2/persistent/{tenant}/{namespace}", "list topics")
        return {TopicName.parse(name).local.split(PARTITION_MARKER)[0] for name in listed}

    def partitions(self, topic: TopicName) -> int:
        data = self._json("GET", f"{topic.path}/partitions", f"read partitions of {topic}")
        return int(data.get("partitions", 0))

    def create_topic(
        self, topic: TopicName, partitions: int, properties: dict[str, str] | None = None
    ) -> bool:
        """Create ``topic`` with ``properties``; False when it existed already (kept as is)."""
        action = f"create topic {topic}"
        try:
            if partitions > 0:
                body = {"partitions": partitions, "properties": properties or {}}
                path = f"{topic.path}/partitions"
                self._send("PUT", path, action, body, content_type=PARTITIONED_METADATA)
            else:
                self._send("PUT", topic.path, action, properties or {})
        except PulsarConflict:
            return False
        return True

    def topic_properties(self, topic: TopicName) -> dict[str, str]:
        """The properties ``topic`` was created with (empty when it has none)."""
        data = self._json("GET", f"{topic.path}/properties", f"read properties of {topic}")
        return {str(k): str(v) for k, v in (data or {}).items()}

    def update_partitions(self, topic: TopicName, partitions: int) -> None:
        self._send("POST", f"{topic.path}/partitions", f"grow {topic}", partitions)

    def delete_topic(self, topic: TopicName, partitioned: bool) -> None:
        path = f"{topic.path}/partitions" if partitioned else topic.path
        try:
            self._send("DELETE", path, f"delete topic {topic}", params={"force": "true"})
        except PulsarNotFound:
            return

    def retention(self, topic: TopicName) -> Retention | None:
        """The topic-level retention policy, or None when the topic has none of its own."""
        data = self._json("GET", f"{topic.path}/retention", f"read retention of {topic}")
        if not data:
            return None
        return Retention(int(data["retentionTimeInMinutes"]), int(data["retentionSizeInMB"]))

    def set_retention(self, topic: TopicName, retention: Retention) -> None:
        body = {
            "retentionTimeInMinutes": retention.minutes,
            "retentionSizeInMB": retention.size_mb,
        }
        self._send("POST", f"{topic.path}/retention", f"set retention of {topic}", body)

    def compaction_threshold(self, topic: TopicName) -> int | None:
        """The topic's own compaction threshold in bytes, None when it has none."""
        data = self._json(
            "GET", f"{topic.path}/compactionThreshold", f"read compaction threshold of {topic}"
        )
        return data if isinstance(data, int) else None  # unset: no content, or null

    def set_compaction_threshold(self, topic: TopicName, threshold_bytes: int) -> None:
        self._send(
            "POST",
            f"{topic.path}/compactionThreshold",
            f"set compaction threshold of {topic}",
            threshold_bytes,
        )

    def deduplication(self, topic: TopicName) -> bool | None:
        """The topic-level deduplicationEnabled policy; None when the topic has none of its
        own (the namespace's, else the broker's ``brokerDeduplicationEnabled``, applies)."""
        data = self._json(
            "GET", f"{topic.path}/deduplicationEnabled", f"read deduplication of {topic}"
        )
        return data if isinstance(data, bool) else None

    def set_deduplication(self, topic: TopicName, enabled: bool) -> None:
        """Broker de-duplication: the broker drops a message whose producer already wrote its
        sequence id (the producer name and the highest id are kept per topic)."""
        self._send(
            "POST", f"{topic.path}/deduplicationEnabled", f"set deduplication of {topic}", enabled
        )

    # schema registry

    def schema_compatibility(self, topic: TopicName) -> str | None:
        """The topic's own schemaCompatibilityStrategy (BACKWARD, FULL, ...); None when it
        has none (the namespace's, else the broker's ``schemaCompatibilityStrategy``, applies)."""
        data = self._json(
            "GET",
            f"{topic.path}/schemaCompatibilityStrategy",
            f"read schema compatibility of {topic}",
        )
        return data if isinstance(data, str) and data else None

    def set_schema_compatibility(self, topic: TopicName, strategy: str) -> None:
        """The rule a new schema version of ``topic`` must pass against the registered ones."""
        self._send(
            "PUT",
            f"{topic.path}/schemaCompatibilityStrategy",
            f"set schema compatibility of {topic}",
            strategy,
        )

    def schema(self, topic: TopicName) -> RegisteredSchema | None:
        """The latest schema of ``topic``; None when it has none (or it was deleted)."""
        try:
            data = self._json("GET", f"{topic.schema_path}/schema", f"read schema of {topic}")
        except PulsarNotFound:
            return None
        if not data:
            return None
        return RegisteredSchema(int(data["version"]), str(data["type"]), str(data["data"]))

    def register_schema(self, topic: TopicName, avro_record: dict[str, Any]) -> int:
        """Register ``avro_record`` as the topic's JSON schema; its version. The registry
        checks it against the registered versions under the topic's compatibility strategy
        first (raises PulsarIncompatibleSchema); the same schema again keeps its version."""
        body = {"type": "JSON", "schema": canonical(avro_record), "properties": {}}
        action = f"register the schema of {topic}"
        try:
            response = self._send("POST", f"{topic.schema_path}/schema", action, body)
        except PulsarConflict as e:
            raise PulsarIncompatibleSchema(f"{action}: {e.reason}", e.status, e.reason) from e
        return int(response.json()["version"]["version"])

    # subscriptions

    def subscriptions(self, topic: TopicName) -> list[str]:
        return list(
            self._json("GET", f"{topic.path}/subscriptions", f"list subscriptions of {topic}")
        )

    def create_subscription(self, topic: TopicName, subscription: str, earliest: bool) -> None:
        """Create ``subscription`` at the earliest message (nothing already published is
        skipped) or the latest (history is not replayed); an existing one stays where it is."""
        self._ignore_conflict(
            "PUT",
            f"{topic.path}/subscription/{quote(subscription, safe='')}",
            f"create subscription {subscription} on {topic}",
            EARLIEST if earliest else LATEST,
        )

    def delete_subscription(self, topic: TopicName, subscription: str) -> bool:
        """Delete ``subscription`` and its backlog; False while consumers are connected
        (Pulsar refuses with 412). One already gone, or on a deleted topic, counts as deleted."""
        try:
            self._send(
                "DELETE",
                f"{topic.path}/subscription/{quote(subscription, safe='')}",
                f"delete subscription {subscription} of {topic}",
            )
        except PulsarNotFound:
            return True
        except PulsarRejected as e:
            if e.status == PRECONDITION_FAILED:
                return False
            raise
        return True

    def stats(self, topic: TopicName, partitioned: bool) -> dict[str, Any]:
        """The topic's stats as Pulsar serves them (partitioned-stats add up the partitions):
        msgRateIn, msgInCounter, publishers, subscriptions with msgBacklog, unackedMessages,
        consumers (msgRateOut each), ..."""
        suffix = "partitioned-stats" if partitioned else "stats"
        # Pulsar reads the oldest backlog entry for its publish time (the stage's lag).
        return dict(
            self._json(
                "GET",
                f"{topic.path}/{suffix}",
                f"read stats of {topic}",
                params={"getEarliestTimeInBacklog": "true"},
            )
        )

    def subscription_stats(
        self, topic: TopicName, subscription: str, partitioned: bool
    ) -> SubscriptionStats | None:
        """Backlog, rates and connected consumers of ``subscription``; None if it does not
        exist."""
        stats = self.stats(topic, partitioned)
        sub = (stats.get("subscriptions") or {}).get(subscription)
        if sub is None:
            return None
        backlog = int(sub.get("msgBacklog", 0))
        # Pulsar answers -1 (or 0 on older brokers) when it has no time to give.
        earliest = int(sub.get("earliestMsgPublishTimeInBacklog") or 0)
        return SubscriptionStats(
            backlog=backlog,
            consumers=len(sub.get("consumers") or []),
            rate_in=float(stats.get("msgRateIn") or 0.0),
            rate_out=float(sub.get("msgRateOut") or 0.0),
            earliest_backlog_ms=earliest if backlog > 0 and earliest > 0 else None,
        )

    def publishers(self, topic: TopicName, partitioned: bool) -> int:
        """Producers connected to ``topic`` now."""
        return len(self.stats(topic, partitioned).get("publishers") or [])

    def newest_payloads(
        self,
        topic: TopicName,
        entries: int,
        enough: Callable[[Sequence[bytes]], bool] = lambda _: False,
    ) -> list[bytes]:
        """Payloads of the messages in the newest ``entries`` entries of ``topic`` (a
        producer's batch is one entry), newest first; fewer when the topic holds fewer, none
        when it holds none or does not exist, and no more entries once ``enough`` holds for
        what was read. One examinemessage call per entry."""
        found: list[bytes] = []
        for position in range(1, entries + 1):
            if found and enough(found):
                break
            action = f"examine message {position} from the end of {topic}"
            path = f"{topic.path}/examinemessage"
            params = {"initialPosition": "latest", "messagePosition": str(position)}
            try:
                # Past the first entry the broker answers a position beyond the oldest with
                # HTTP 500: an end, not an outage to retry.
                response = (
                    self._send("GET", path, action, params=params)
                    if position == 1
                    else self._once("GET", path, action, None, params, None)
                )
            except (PulsarNotFound, PulsarUnavailable) as e:
                if position == 1 and isinstance(e, PulsarUnavailable):
                    raise
                break
            except PulsarRejected as e:
                if e.status == PRECONDITION_FAILED:  # the topic holds no message
                    break
                raise
            batched = response.headers.get("x-pulsar-num-batch-message")
            payloads = (
                entry_payloads(response.content, int(batched)) if batched else [response.content]
            )
            found.extend(reversed(payloads))
        return found

    def broker_topic_stats(self) -> dict[str, Any]:
        """Stats of every topic this broker has loaded, subscriptions included, in one call:
        {namespace: {bundle: {"persistent": {topic: stats}}}}. Needs the super-user role."""
        return dict(self._json("GET", "/admin/v2/broker-stats/topics", "read broker topic stats"))

    # stats and geo-replication (the hub)

    def topic_stats(self, topic: TopicName, partitioned: bool) -> dict[str, Any] | None:
        """Counters and subscriptions of ``topic`` (with the publish time of each
        subscription's oldest unacknowledged message); None if the topic does not exist."""
        suffix = "partitioned-stats" if partitioned else "stats"
        try:
            stats = self._json(
                "GET",
                f"{topic.path}/{suffix}?getEarliestTimeInBacklog=true",
                f"read stats of {topic}",
            )
        except PulsarNotFound:
            return None
        return dict(stats)

    def cluster(self, name: str) -> dict[str, Any] | None:
        """The registration of cluster ``name`` (its URLs); None when it is not registered."""
        try:
            return dict(self._json("GET", f"/admin/v2/clusters/{name}", f"read cluster {name}"))
        except PulsarNotFound:
            return None

    def register_cluster(self, name: str, admin_url: str, broker_url: str) -> None:
        """Register (or re-point) peer cluster ``name`` so replicators can reach it."""
        body = {"serviceUrl": admin_url, "brokerServiceUrl": broker_url}
        action = f"register cluster {name}"
        try:
            self._send("PUT", f"/admin/v2/clusters/{name}", action, body)
        except PulsarConflict:
            self._send("POST", f"/admin/v2/clusters/{name}", action, body)

    def tenant_clusters(self, tenant: str) -> list[str] | None:
        """Allowed clusters of ``tenant``; None when the tenant does not exist."""
        try:
            info = self._json("GET", f"/admin/v2/tenants/{tenant}", f"read tenant {tenant}")
        except PulsarNotFound:
            return None
        return list(info.get("allowedClusters") or [])

    def set_tenant_clusters(self, tenant: str, clusters: list[str]) -> None:
        body = {"allowedClusters": clusters, "adminRoles": []}
        self._send("POST", f"/admin/v2/tenants/{tenant}", f"update tenant {tenant}", body)

    def replication_clusters(self, tenant: str, namespace: str) -> list[str]:
        path = f"/admin/v2/namespaces/{tenant}/{namespace}/replication"
        return list(self._json("GET", path, f"read replication of {tenant}/{namespace}"))

    def set_replication_clusters(self, tenant: str, namespace: str, clusters: list[str]) -> None:
        """Replicate the namespace between ``clusters``. Pulsar deletes the namespace's topics
        in a cluster that leaves the list."""
        path = f"/admin/v2/namespaces/{tenant}/{namespace}/replication"
        self._send("POST", path, f"set replication of {tenant}/{namespace}", clusters)

    # plumbing

    def _ignore_conflict(self, method: str, path: str, action: str, body: Any = None) -> None:
        try:
            self._send(method, path, action, body)
        except PulsarConflict:
            return

    def _json(
        self, method: str, path: str, action: str, params: dict[str, str] | None = None
    ) -> Any:
        response = self._send(method, path, action, params=params)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError as e:
            raise PulsarError(f"{action}: response is not JSON: {response.text[:200]}") from e

    def _send(
        self,
        method: str,
        path: str,
        action: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        response: httpx.Response = self._retrying(
            self._once, method, path, action, body, params, content_type
        )
        return response

    def _once(
        self,
        method: str,
        path: str,
        action: str,
        body: Any,
        params: dict[str, str] | None,
        content_type: str | None,
    ) -> httpx.Response:
        headers = {"Content-Type": content_type} if content_type else None
        url: str | httpx.URL = path
        for _ in range(MAX_REDIRECTS + 1):
            start = time.perf_counter()
            try:
                response = self._http.request(
                    method, url, json=body, params=params, headers=headers
                )
            except httpx.TransportError as e:
                self._observe(method, path, "error", start)
                raise from_transport(e, f"{action} at {self.admin_url}") from e
            self._observe(method, path, str(response.status_code), start)
            target = self._redirect(response, action)
            if target is None:
                break
            url, params = target, None  # the Location carries the query
        if response.is_success:
            return response
        raise from_response(response, action)

    def _observe(self, method: str, path: str, status: str, start: float) -> None:
        if self._observer is not None:
            self._observer(method, path, status, time.perf_counter() - start)

    def _redirect(self, response: httpx.Response, action: str) -> httpx.URL | None:
        """Where a 307/308 sends the request (a multi-broker cluster redirects topic calls to
        the broker that owns the topic), or None. Followed here rather than by httpx, which
        would drop the Authorization header on the way to another host; the same method and
        body are sent again. A redirect to another scheme (https -> http would leak the token)
        is refused."""
        location = response.headers.get("location")
        if response.status_code not in REDIRECTS or not location:
            return None
        target = response.url.join(location)
        if target.scheme != self._scheme:
            raise PulsarRejected(
                f"{action}: refused redirect from {self._scheme}:// to {target}",
                response.status_code,
            )
        return target


class AdminPool:
    """One client per (admin URL, token, CA), shared by handler threads (httpx is
    thread-safe); a rotated token or CA gets a client of its own."""

    def __init__(
        self, *, timeout_s: float, attempts: int, observer: RequestObserver | None = None
    ) -> None:
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._observer = observer
        self._clients: dict[tuple[str, str | None, str | None], PulsarAdmin] = {}
        self._lock = threading.Lock()

    def __call__(self, admin_url: str, token: str | None, ca: str | None = None) -> PulsarAdmin:
        key = (admin_url, token, ca)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = PulsarAdmin(
                    admin_url,
                    token=token,
                    ca=ca,
                    timeout_s=self._timeout_s,
                    attempts=self._attempts,
                    observer=self._observer,
                )
            return self._clients[key]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
