"""The admin client's error mapping, retries and request shapes (no network)."""

from __future__ import annotations

import json

import httpx
import pytest

from streamvane_operator.pulsar.admin import EARLIEST, LATEST, PulsarAdmin, Retention, TopicName
from streamvane_operator.pulsar.errors import (
    PulsarError,
    PulsarNotFound,
    PulsarRejected,
    PulsarUnavailable,
)
from streamvane_operator.pulsar.testing import FakePulsar

TOPIC = TopicName("t", "ns", "items")


def admin(handler: httpx.MockTransport, attempts: int = 3) -> PulsarAdmin:
    return PulsarAdmin(
        "http://pulsar.test:8080", transport=handler, attempts=attempts, max_backoff_s=0
    )


def respond(*responses: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return httpx.MockTransport(handle), seen


def test_admin_retries_then_succeeds_when_broker_answers_503_once() -> None:
    transport, seen = respond(httpx.Response(503), httpx.Response(200, json=["standalone"]))

    assert admin(transport).clusters() == ["standalone"]
    assert len(seen) == 2


def test_admin_raises_unavailable_after_attempts_when_connection_is_refused() -> None:
    calls = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(PulsarUnavailable, match="list tenants at http://pulsar.test:8080"):
        admin(httpx.MockTransport(refuse), attempts=3).tenants()
    assert len(calls) == 3


def test_admin_raises_rejected_without_retry_when_pulsar_answers_412() -> None:
    transport, seen = respond(httpx.Response(412, json={"reason": "Retention Quota must exceed"}))

    with pytest.raises(PulsarRejected, match="HTTP 412: Retention Quota must exceed") as raised:
        admin(transport).set_retention(TOPIC, Retention(1, -1))
    assert raised.value.status == 412
    assert len(seen) == 1


def test_admin_raises_not_found_when_topic_is_missing() -> None:
    transport, _ = respond(httpx.Response(404, json={"reason": "Topic not found"}))

    with pytest.raises(PulsarNotFound):
        admin(transport).subscriptions(TOPIC)


def test_admin_ignores_conflict_when_resource_already_exists() -> None:
    transport, seen = respond(httpx.Response(409, json={"reason": "exists"}))

    assert admin(transport).create_topic(TOPIC, 0) is False
    admin(transport).create_subscription(TOPIC, "sub", earliest=True)

    assert [r.method for r in seen] == ["PUT", "PUT"]


def test_admin_creates_subscription_at_earliest_when_asked() -> None:
    transport, seen = respond(httpx.Response(204))

    admin(transport).create_subscription(TOPIC, "my sub", earliest=True)
    admin(transport).create_subscription(TOPIC, "late", earliest=False)

    first, second = seen
    assert first.url.raw_path == b"/admin/v2/persistent/t/ns/items/subscription/my%20sub"
    assert json.loads(first.content) == EARLIEST
    assert json.loads(second.content) == LATEST


def test_admin_sends_partition_count_when_topic_is_partitioned() -> None:
    transport, seen = respond(httpx.Response(204))

    assert admin(transport).create_topic(TOPIC, 4, {"owner": "ns/p"}) is True

    assert seen[0].url.path == "/admin/v2/persistent/t/ns/items/partitions"
    assert json.loads(seen[0].content) == {"partitions": 4, "properties": {"owner": "ns/p"}}


def test_admin_sends_bearer_token_when_configured() -> None:
    transport, seen = respond(httpx.Response(200, json=[]))

    PulsarAdmin("http://p:8080", token="jwt", transport=transport).tenants()

    assert seen[0].headers["Authorization"] == "Bearer jwt"


def test_admin_raises_pulsar_error_when_body_is_not_json() -> None:
    transport, _ = respond(httpx.Response(200, text="<html>proxy</html>"))

    with pytest.raises(PulsarError, match="not JSON"):
        admin(transport).tenants()


def test_admin_lists_partitioned_topics_once_when_namespace_has_partitions() -> None:
    fake = FakePulsar(tenants={"t"}, namespaces={"t/ns"})
    client = fake.admin()
    client.create_topic(TopicName("t", "ns", "parted"), 3)
    client.create_topic(TopicName("t", "ns", "plain"), 0)

    assert client.topics("t", "ns") == {"parted": 3, "plain": 0}


def test_topic_name_refuses_non_persistent_names() -> None:
    with pytest.raises(ValueError, match="not a persistent topic"):
        TopicName.parse("non-persistent://t/ns/x")
    assert str(TopicName.parse("persistent://t/ns/x")) == "persistent://t/ns/x"
