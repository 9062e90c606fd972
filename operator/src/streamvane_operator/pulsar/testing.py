"""An in-memory Pulsar admin REST endpoint (an httpx transport) for unit tests.

It answers the calls ``PulsarAdmin`` makes with the status codes real Pulsar uses, so unit
tests exercise the real client code; integration tests run the same client against Pulsar.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from streamvane_operator.pulsar.admin import PulsarAdmin, RequestObserver

Route = Callable[[re.Match[str], Any], httpx.Response]
_TOPIC = r"/admin/v2/persistent/(?P<t>[^/]+)/(?P<ns>[^/]+)/(?P<topic>[^/]+)"
_SCHEMA = r"/admin/v2/schemas/(?P<t>[^/]+)/(?P<ns>[^/]+)/(?P<topic>[^/]+)/schema"


@dataclass
class FakePulsar:
    clusters: list[str] = field(default_factory=lambda: ["standalone"])
    tenants: set[str] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)
    topics: dict[str, int] = field(default_factory=dict)
    """Fully qualified name -> partitions (0: non-partitioned)."""
    properties: dict[str, dict[str, str]] = field(default_factory=dict)
    """Fully qualified name -> the properties the topic was created with."""
    retention: dict[str, dict[str, int]] = field(default_factory=dict)
    compaction_threshold: dict[str, int] = field(default_factory=dict)
    deduplication: dict[str, bool] = field(default_factory=dict)
    """Fully qualified name -> its topic-level deduplicationEnabled policy."""
    subscriptions: dict[str, set[str]] = field(default_factory=dict)
    positions: dict[tuple[str, str], str] = field(default_factory=dict)
    """(topic, subscription) -> "earliest" or "latest": where it was created."""
    backlog: dict[tuple[str, str], int] = field(default_factory=dict)
    consumers: dict[tuple[str, str], int] = field(default_factory=dict)
    """Connected consumers per (topic, subscription)."""
    publishers: dict[str, int] = field(default_factory=dict)
    """Connected producers per topic."""
    rate_in: dict[str, float] = field(default_factory=dict)
    """msgRateIn per topic."""
    rate_out: dict[tuple[str, str], float] = field(default_factory=dict)
    """msgRateOut per (topic, subscription)."""
    earliest_backlog_ms: dict[tuple[str, str], int] = field(default_factory=dict)
    """Publish time of the oldest backlog message per (topic, subscription)."""
    published: dict[str, int] = field(default_factory=dict)
    """Messages ever published per topic (msgInCounter)."""
    dispatched: dict[tuple[str, str], int] = field(default_factory=dict)
    """Messages ever dispatched per (topic, subscription) (msgOutCounter)."""
    schemas: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Fully qualified name -> registered (type, definition) versions, oldest first."""
    schema_compatibility: dict[str, str] = field(default_factory=dict)
    """Fully qualified name -> its topic-level schemaCompatibilityStrategy."""
    entries: dict[str, list[list[bytes]]] = field(default_factory=dict)
    """Fully qualified name -> its entries, oldest first: each the payloads of one producer
    batch (one payload: not batched), as examinemessage serves them."""
    unavailable: bool = False
    broker_stats: bool = True
    """Whether broker-stats/topics is served (False: refused, as for a non-super-user)."""
    calls: list[str] = field(default_factory=list)
    _params: httpx.QueryParams = field(default_factory=httpx.QueryParams, repr=False)
    """Query of the request being answered."""

    def admin(
        self, url: str = "http://pulsar.test:8080", observer: RequestObserver | None = None
    ) -> PulsarAdmin:
        return PulsarAdmin(
            url,
            transport=httpx.MockTransport(self.handle),
            attempts=2,
            max_backoff_s=0,
            observer=observer,
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.unavailable:
            raise httpx.ConnectError("connection refused (fake)", request=request)
        path = unquote(request.url.path)
        self.calls.append(f"{request.method} {path}")
        body = json.loads(request.content) if request.content else None
        for pattern, method, handler in self._routes():
            match = re.fullmatch(pattern, path)
            if match and request.method == method:
                self._params = request.url.params
                return handler(match, body)
        return httpx.Response(404, json={"reason": "no route (fake)"})

    def _routes(self) -> list[tuple[str, str, Route]]:
        return [
            (r"/admin/v2/clusters", "GET", lambda m, b: _ok(self.clusters)),
            (r"/admin/v2/broker-stats/topics", "GET", self._broker_topics),
            (r"/admin/v2/tenants", "GET", lambda m, b: _ok(sorted(self.tenants))),
            (r"/admin/v2/tenants/(?P<t>[^/]+)", "PUT", self._create_tenant),
            (r"/admin/v2/namespaces/(?P<t>[^/]+)", "GET", self._list_namespaces),
            (r"/admin/v2/namespaces/(?P<t>[^/]+)/(?P<ns>[^/]+)", "PUT", self._create_namespace),
            (
                r"/admin/v2/persistent/(?P<t>[^/]+)/(?P<ns>[^/]+)/partitioned",
                "GET",
                lambda m, b: self._list_topics(m, partitioned=True),
            ),
            (
                r"/admin/v2/persistent/(?P<t>[^/]+)/(?P<ns>[^/]+)",
                "GET",
                lambda m, b: self._list_topics(m, partitioned=False),
            ),
            (
                _TOPIC + "/partitions",
                "PUT",
                lambda m, b: self._create_topic(m, int(b["partitions"]), b["properties"]),
            ),
            (_TOPIC + "/partitions", "POST", self._grow),
            (
                _TOPIC + "/partitions",
                "GET",
                lambda m, b: _ok({"partitions": self.topics.get(_name(m), 0)}),
            ),
            (_TOPIC + "/partitions", "DELETE", self._delete_topic),
            (_TOPIC, "PUT", lambda m, b: self._create_topic(m, 0, b or {})),
            (
                _TOPIC + "/properties",
                "GET",
                lambda m, b: (
                    _ok(self.properties.get(_name(m), {}))
                    if _name(m) in self.topics
                    else httpx.Response(404, json={"reason": "Topic not found"})
                ),
            ),
            (_TOPIC, "DELETE", self._delete_topic),
            (_TOPIC + "/retention", "GET", lambda m, b: _ok(self.retention.get(_name(m)))),
            (_TOPIC + "/retention", "POST", self._set_retention),
            (
                _TOPIC + "/compactionThreshold",
                "GET",
                lambda m, b: _ok(self.compaction_threshold.get(_name(m))),
            ),
            (_TOPIC + "/compactionThreshold", "POST", self._set_compaction_threshold),
            (
                _TOPIC + "/deduplicationEnabled",
                "GET",
                lambda m, b: _ok(self.deduplication.get(_name(m))),
            ),
            (_TOPIC + "/deduplicationEnabled", "POST", self._set_deduplication),
            (
                _TOPIC + "/subscriptions",
                "GET",
                lambda m, b: _ok(sorted(self.subscriptions.get(_name(m), set()))),
            ),
            (_TOPIC + "/subscription/(?P<sub>[^/]+)", "PUT", self._create_subscription),
            (_TOPIC + "/subscription/(?P<sub>[^/]+)", "DELETE", self._delete_subscription),
            (_TOPIC + "/(partitioned-)?stats", "GET", self._stats),
            (_TOPIC + "/examinemessage", "GET", self._examine),
            (
                _TOPIC + "/schemaCompatibilityStrategy",
                "GET",
                lambda m, b: _ok(self.schema_compatibility.get(_name(m))),
            ),
            (_TOPIC + "/schemaCompatibilityStrategy", "PUT", self._set_schema_compatibility),
            (_SCHEMA, "GET", self._get_schema),
            (_SCHEMA, "POST", self._post_schema),
        ]

    def _create_tenant(self, m: re.Match[str], body: object) -> httpx.Response:
        if m["t"] in self.tenants:
            return _conflict("Tenant already exists")
        self.tenants.add(m["t"])
        return httpx.Response(204)

    def _list_namespaces(self, m: re.Match[str], body: object) -> httpx.Response:
        if m["t"] not in self.tenants:
            return httpx.Response(404, json={"reason": "Tenant does not exist"})
        return _ok(sorted(ns for ns in self.namespaces if ns.startswith(m["t"] + "/")))

    def _create_namespace(self, m: re.Match[str], body: object) -> httpx.Response:
        if m["t"] not in self.tenants:
            return httpx.Response(404, json={"reason": "Tenant does not exist"})
        name = f"{m['t']}/{m['ns']}"
        if name in self.namespaces:
            return _conflict("Namespace already exists")
        self.namespaces.add(name)
        return httpx.Response(204)

    def _list_topics(self, m: re.Match[str], partitioned: bool) -> httpx.Response:
        prefix = f"persistent://{m['t']}/{m['ns']}/"
        names = [
            name
            for name, parts in self.topics.items()
            if name.startswith(prefix) and (parts > 0) == partitioned
        ]
        return _ok(sorted(names))

    def _create_topic(
        self, m: re.Match[str], partitions: int, properties: dict[str, str]
    ) -> httpx.Response:
        if f"{m['t']}/{m['ns']}" not in self.namespaces:
            return httpx.Response(404, json={"reason": "Namespace does not exist"})
        if _name(m) in self.topics:
            return _conflict("This topic already exists")
        self.topics[_name(m)] = partitions
        self.properties[_name(m)] = dict(properties)
        return httpx.Response(204)

    def _grow(self, m: re.Match[str], body: object) -> httpx.Response:
        self.topics[_name(m)] = int(str(body))
        return httpx.Response(204)

    def _delete_topic(self, m: re.Match[str], body: object) -> httpx.Response:
        if self.topics.pop(_name(m), None) is None:
            return httpx.Response(404, json={"reason": "Topic not found"})
        self.subscriptions.pop(_name(m), None)
        self.properties.pop(_name(m), None)
        return httpx.Response(204)

    def _set_retention(self, m: re.Match[str], body: object) -> httpx.Response:
        assert isinstance(body, dict)
        self.retention[_name(m)] = body
        return httpx.Response(204)

    def _set_compaction_threshold(self, m: re.Match[str], body: object) -> httpx.Response:
        assert isinstance(body, int)
        self.compaction_threshold[_name(m)] = body
        return httpx.Response(204)

    def _set_deduplication(self, m: re.Match[str], body: object) -> httpx.Response:
        assert isinstance(body, bool)
        self.deduplication[_name(m)] = body
        return httpx.Response(204)

    def _create_subscription(self, m: re.Match[str], body: object) -> httpx.Response:
        subs = self.subscriptions.setdefault(_name(m), set())
        if m["sub"] in subs:
            return _conflict("Subscription already exists for topic")
        subs.add(m["sub"])
        earliest = isinstance(body, dict) and body.get("ledgerId") == -1
        self.positions[(_name(m), m["sub"])] = "earliest" if earliest else "latest"
        return httpx.Response(204)

    def _delete_subscription(self, m: re.Match[str], body: object) -> httpx.Response:
        subs = self.subscriptions.get(_name(m), set())
        if m["sub"] not in subs:
            return httpx.Response(404, json={"reason": "Subscription not found"})
        if self.consumers.get((_name(m), m["sub"]), 0):
            return httpx.Response(
                412, json={"reason": "Subscription has active connected consumers"}
            )
        subs.remove(m["sub"])
        return httpx.Response(204)

    def _broker_topics(self, m: re.Match[str], body: object) -> httpx.Response:
        """Every topic as the broker's one bundle holds it; a partitioned topic's figures on
        its partition 0 (the others empty), as the client adds them up."""
        if not self.broker_stats:
            return httpx.Response(403, json={"reason": "Super-user access required"})
        namespaces: dict[str, dict[str, Any]] = {}
        for topic, partitions in self.topics.items():
            tenant, namespace, _ = topic.removeprefix("persistent://").split("/")
            bundle = namespaces.setdefault(f"{tenant}/{namespace}", {"0x0_0xf": {"persistent": {}}})
            names = [f"{topic}-partition-{i}" for i in range(partitions)] or [topic]
            for i, name in enumerate(names):
                subs = {
                    sub: {
                        "msgBacklog": self.backlog.get((topic, sub), 0) if i == 0 else 0,
                        "msgRateOut": self.rate_out.get((topic, sub), 0.0) if i == 0 else 0.0,
                        "consumers": [{}] * self.consumers.get((topic, sub), 0) if i == 0 else [],
                    }
                    for sub in self.subscriptions.get(topic, set())
                }
                rate = self.rate_in.get(topic, 0.0) if i == 0 else 0.0
                bundle["0x0_0xf"]["persistent"][name] = {"msgRateIn": rate, "subscriptions": subs}
        return _ok(namespaces)

    def _examine(self, m: re.Match[str], body: object) -> httpx.Response:
        """As Pulsar 4.0: 404 for a missing topic, 412 for one without messages, 500 for a
        position past the oldest entry; a batch's body as the broker writes it."""
        topic, position = _name(m), int(self._params.get("messagePosition", "1"))
        if topic not in self.topics:
            return httpx.Response(404, json={"reason": "Topic not found"})
        entries = self.entries.get(topic, [])
        if not entries:
            return httpx.Response(412, json={"reason": "the total message is zero"})
        if position > len(entries):
            return httpx.Response(500, text="Incorrect parameter input error code: -14")
        payloads = entries[-position]
        if len(payloads) == 1:
            return httpx.Response(200, content=payloads[0])
        headers = {"X-Pulsar-num-batch-message": str(len(payloads))}
        return httpx.Response(200, content=batch_body(payloads), headers=headers)

    def _stats(self, m: re.Match[str], body: object) -> httpx.Response:
        topic = _name(m)
        earliest = self._params.get("getEarliestTimeInBacklog") == "true"
        if topic not in self.topics:
            return httpx.Response(404, json={"reason": "Topic not found"})
        subs = {
            sub: {
                "msgBacklog": self.backlog.get((topic, sub), 0),
                "msgRateOut": self.rate_out.get((topic, sub), 0.0),
                "msgOutCounter": self.dispatched.get((topic, sub), 0),
                "consumers": [{}] * self.consumers.get((topic, sub), 0),
                # As Pulsar: -1 unless asked for, or when there is no backlog.
                "earliestMsgPublishTimeInBacklog": (
                    self.earliest_backlog_ms.get((topic, sub), -1) if earliest else -1
                ),
            }
            for sub in self.subscriptions.get(topic, set())
        }
        return _ok(
            {
                "msgRateIn": self.rate_in.get(topic, 0.0),
                "msgInCounter": self.published.get(topic, 0),
                "subscriptions": subs,
                "publishers": [{}] * self.publishers.get(topic, 0),
            }
        )

    def _set_schema_compatibility(self, m: re.Match[str], body: object) -> httpx.Response:
        assert isinstance(body, str)
        self.schema_compatibility[_name(m)] = body
        return httpx.Response(204)

    def _get_schema(self, m: re.Match[str], body: object) -> httpx.Response:
        versions = self.schemas.get(_name(m))
        if not versions:
            return httpx.Response(404, json={"reason": "Schema not found"})
        kind, data = versions[-1]
        return _ok({"version": len(versions) - 1, "type": kind, "data": data, "properties": {}})

    def _post_schema(self, m: re.Match[str], body: Any) -> httpx.Response:
        """Pulsar's answers: the version (the existing one for a schema registered before),
        or a Jetty error page with 409 for an incompatible schema. Only one rule stands in for
        Avro's: a field whose type differs from the latest version's is incompatible."""
        versions = self.schemas.setdefault(_name(m), [])
        new = (body["type"], body["schema"])
        if new in versions:
            return _ok({"version": {"version": versions.index(new)}})
        if versions and _changed_types(versions[-1][1], new[1]):
            strategy = self.schema_compatibility.get(_name(m), "FULL")
            reason = (
                f"Error during schema compatibility check with strategy {strategy}: "
                "org.apache.avro.SchemaValidationException: Unable to read schema: ..."
            )
            page = f"<html><head><title>Error 409 {html.escape(reason)}</title></head></html>"
            return httpx.Response(409, text=page, headers={"Content-Type": "text/html"})
        versions.append(new)
        return _ok({"version": {"version": len(versions) - 1}})


def _changed_types(old: str, new: str) -> bool:
    before = {f["name"]: f["type"] for f in json.loads(old).get("fields", [])}
    return any(
        f["name"] in before and before[f["name"]] != f["type"]
        for f in json.loads(new).get("fields", [])
    )


def _name(m: re.Match[str]) -> str:
    return f"persistent://{m['t']}/{m['ns']}/{m['topic']}"


def _ok(data: object) -> httpx.Response:
    return httpx.Response(200, json=data) if data is not None else httpx.Response(204)


def _conflict(reason: str) -> httpx.Response:
    return httpx.Response(409, json={"reason": reason})


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def batch_body(payloads: list[bytes]) -> bytes:
    """A batch entry as examinemessage returns it: per message a 4-byte size, its
    SingleMessageMetadata (a property, a partition key, payload_size, an event time) and the
    payload."""
    body = b""
    prop = b"\x0a\x01a\x12\x01b"  # KeyValue{key: "a", value: "b"}
    for i, payload in enumerate(payloads):
        key = f"k{i}".encode()
        metadata = (
            b"\x0a" + _varint(len(prop)) + prop
            + b"\x12" + _varint(len(key)) + key
            + b"\x18" + _varint(len(payload))
            + b"\x28" + _varint(1_764_633_600_000)
        )  # fmt: skip
        body += len(metadata).to_bytes(4, "big") + metadata + payload
    return body
