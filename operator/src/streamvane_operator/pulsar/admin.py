"""A small Pulsar admin REST (v2) client: what the operator needs, nothing more.

Transient failures (connection, timeouts, 5xx) are retried with backoff, then raised as
``PulsarUnavailable``; everything else becomes a ``PulsarRejected`` subclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from streamvane_operator.pulsar.errors import (
    PulsarConflict,
    PulsarError,
    PulsarNotFound,
    PulsarRejected,
    PulsarUnavailable,
    from_response,
    from_transport,
)

EARLIEST = {"ledgerId": -1, "entryId": -1, "partitionIndex": -1}
"""MessageId.earliest as the REST API takes it: a new subscription starts at the oldest message."""

PARTITION_MARKER = "-partition-"

PRECONDITION_FAILED = 412
"""Pulsar's answer to deleting a subscription that still has consumers connected."""


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

    def __str__(self) -> str:
        return f"persistent://{self.tenant}/{self.namespace}/{self.local}"


class PulsarAdmin:
    def __init__(
        self,
        admin_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        attempts: int = 3,
        max_backoff_s: float = 2.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.admin_url = admin_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.admin_url, headers=headers, timeout=timeout_s, transport=transport
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

    def partitions(self, topic: TopicName) -> int:
        data = self._json("GET", f"{topic.path}/partitions", f"read partitions of {topic}")
        return int(data.get("partitions", 0))

    def create_topic(self, topic: TopicName, partitions: int) -> None:
        action = f"create topic {topic}"
        if partitions > 0:
            self._ignore_conflict("PUT", f"{topic.path}/partitions", action, partitions)
        else:
            self._ignore_conflict("PUT", topic.path, action)

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

    # subscriptions

    def subscriptions(self, topic: TopicName) -> list[str]:
        return list(
            self._json("GET", f"{topic.path}/subscriptions", f"list subscriptions of {topic}")
        )

    def create_subscription(self, topic: TopicName, subscription: str) -> None:
        """Create ``subscription`` at the earliest message, so nothing already published is
        skipped; an existing subscription is left where it is."""
        self._ignore_conflict(
            "PUT",
            f"{topic.path}/subscription/{quote(subscription, safe='')}",
            f"create subscription {subscription} on {topic}",
            EARLIEST,
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

    def subscription_stats(
        self, topic: TopicName, subscription: str, partitioned: bool
    ) -> SubscriptionStats | None:
        """Backlog and connected consumers of ``subscription``; None if it does not exist."""
        suffix = "partitioned-stats" if partitioned else "stats"
        stats = self._json("GET", f"{topic.path}/{suffix}", f"read stats of {topic}")
        sub = (stats.get("subscriptions") or {}).get(subscription)
        if sub is None:
            return None
        return SubscriptionStats(int(sub.get("msgBacklog", 0)), len(sub.get("consumers") or []))

    def publishers(self, topic: TopicName, partitioned: bool) -> int:
        """Producers connected to ``topic`` now."""
        suffix = "partitioned-stats" if partitioned else "stats"
        stats = self._json("GET", f"{topic.path}/{suffix}", f"read stats of {topic}")
        return len(stats.get("publishers") or [])

    # plumbing

    def _ignore_conflict(self, method: str, path: str, action: str, body: Any = None) -> None:
        try:
            self._send(method, path, action, body)
        except PulsarConflict:
            return

    def _json(self, method: str, path: str, action: str) -> Any:
        response = self._send(method, path, action)
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
    ) -> httpx.Response:
        response: httpx.Response = self._retrying(self._once, method, path, action, body, params)
        return response

    def _once(
        self, method: str, path: str, action: str, body: Any, params: dict[str, str] | None
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=body, params=params)
        except httpx.TransportError as e:
            raise from_transport(e, f"{action} at {self.admin_url}") from e
        if response.is_success:
            return response
        raise from_response(response, action)


class AdminPool:
    """One client per (admin URL, token), shared by handler threads (httpx is thread-safe)."""

    def __init__(self, *, timeout_s: float, attempts: int) -> None:
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._clients: dict[tuple[str, str | None], PulsarAdmin] = {}

    def __call__(self, admin_url: str, token: str | None) -> PulsarAdmin:
        key = (admin_url, token)
        if key not in self._clients:
            self._clients[key] = PulsarAdmin(
                admin_url, token=token, timeout_s=self._timeout_s, attempts=self._attempts
            )
        return self._clients[key]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
