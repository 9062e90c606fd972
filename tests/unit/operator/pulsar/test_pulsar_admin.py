"""The admin client's error mapping, retries and request shapes (no network)."""

from __future__ import annotations

import json
import ssl

import httpx
import pytest

from streamvane_operator.pulsar.admin import (
    EARLIEST,
    LATEST,
    MAX_REDIRECTS,
    PulsarAdmin,
    Retention,
    TopicName,
)
from streamvane_operator.pulsar.errors import (
    PulsarError,
    PulsarIncompatibleSchema,
    PulsarMisconfigured,
    PulsarNotFound,
    PulsarRejected,
    PulsarUnauthorized,
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


def test_admin_follows_a_307_with_method_body_and_token_when_another_broker_owns_the_topic() -> (
    None
):
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "broker-0.test":
            owner = request.url.copy_with(host="broker-1.test")
            return httpx.Response(307, headers={"Location": str(owner)})
        return httpx.Response(204)

    client = PulsarAdmin(
        "http://broker-0.test:8080", token="jwt", transport=httpx.MockTransport(handle)
    )
    client.set_retention(TOPIC, Retention(minutes=60, size_mb=-1))

    first, redirected = seen
    assert (redirected.method, redirected.url.host) == ("POST", "broker-1.test")
    assert redirected.url.path == first.url.path
    assert redirected.content == first.content
    assert json.loads(redirected.content) == {"retentionTimeInMinutes": 60, "retentionSizeInMB": -1}
    assert redirected.headers["authorization"] == "Bearer jwt"


def test_admin_keeps_the_query_when_following_a_308() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(
                308, headers={"Location": f"http://b1.test{request.url.raw_path.decode()}"}
            )
        return httpx.Response(204)

    admin(httpx.MockTransport(handle)).delete_topic(TOPIC, partitioned=False)

    assert [r.method for r in seen] == ["DELETE", "DELETE"]
    assert seen[1].url.params["force"] == "true" and seen[1].url.host == "b1.test"


def test_admin_refuses_a_redirect_to_plain_http_when_it_talks_https() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(307, headers={"Location": "http://b1.test/admin/v2/tenants"})

    client = PulsarAdmin("https://b0.test", token="jwt", transport=httpx.MockTransport(handle))
    with pytest.raises(PulsarRejected, match="refused redirect from https://"):
        client.tenants()
    assert len(seen) == 1


def test_admin_gives_up_when_brokers_redirect_in_a_loop() -> None:
    transport, seen = respond(httpx.Response(307, headers={"Location": "/admin/v2/tenants"}))

    with pytest.raises(PulsarRejected, match="HTTP 307"):
        admin(transport).tenants()
    assert len(seen) == MAX_REDIRECTS + 1


@pytest.mark.parametrize(("status", "named"), [(401, "invalid token"), (403, "may not do this")])
def test_admin_raises_unauthorized_without_retry_when_the_token_is_refused(
    status: int, named: str
) -> None:
    transport, seen = respond(httpx.Response(status, json={"reason": "Authentication required"}))

    with pytest.raises(PulsarUnauthorized, match=named):
        admin(transport).tenants()
    assert len(seen) == 1


def test_admin_raises_misconfigured_without_retry_when_the_certificate_is_untrusted() -> None:
    calls = []

    def untrusted(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        cause = ssl.SSLCertVerificationError("certificate verify failed")
        cause.verify_message = "unable to get local issuer certificate"
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]", request=request) from cause

    with pytest.raises(PulsarMisconfigured, match="unable to get local issuer certificate"):
        admin(httpx.MockTransport(untrusted)).tenants()
    assert len(calls) == 1


def test_admin_raises_misconfigured_when_the_ca_bundle_is_not_pem() -> None:
    with pytest.raises(PulsarMisconfigured, match="not PEM"):
        PulsarAdmin("https://b0.test", ca="not a certificate")


RECORD = {"type": "record", "name": "X", "fields": [{"name": "a", "type": "string"}]}
JETTY_409 = (
    "<html><head><title>Error 409 Error during schema compatibility check with strategy "
    "BACKWARD: org.apache.avro.SchemaValidationException: Unable to read schema: \n{\n  "
    "&quot;type&quot; : &quot;record&quot;}</title></head><body>...</body></html>"
)


def test_admin_registers_a_json_schema_in_canonical_form_and_returns_its_version() -> None:
    transport, seen = respond(httpx.Response(200, json={"version": {"version": 3}}))
    assert admin(transport).register_schema(TOPIC, RECORD) == 3
    assert (seen[0].method, seen[0].url.path) == ("POST", "/admin/v2/schemas/t/ns/items/schema")
    body = json.loads(seen[0].content)
    assert body == {
        "type": "JSON",
        "schema": json.dumps(RECORD, sort_keys=True, separators=(",", ":")),
        "properties": {},
    }


def test_admin_raises_incompatible_schema_with_the_registry_reason_when_pulsar_answers_409() -> (
    None
):
    transport, _ = respond(httpx.Response(409, text=JETTY_409))
    with pytest.raises(PulsarIncompatibleSchema) as raised:
        admin(transport).register_schema(TOPIC, RECORD)
    message = str(raised.value)
    assert "Error during schema compatibility check with strategy BACKWARD" in message
    assert '"type" : "record"' in message and "<title>" not in message


def test_admin_keeps_the_version_when_the_same_schema_is_registered_again() -> None:
    pulsar = FakePulsar()
    client = pulsar.admin()
    assert client.register_schema(TOPIC, RECORD) == 0
    assert client.register_schema(TOPIC, RECORD) == 0
    latest = client.schema(TOPIC)
    assert latest is not None and (latest.version, latest.type) == (0, "JSON")
    assert json.loads(latest.definition) == RECORD


def test_admin_reads_no_schema_and_no_strategy_when_the_topic_has_none() -> None:
    client = FakePulsar().admin()
    assert client.schema(TOPIC) is None
    assert client.schema_compatibility(TOPIC) is None
    client.set_schema_compatibility(TOPIC, "BACKWARD")
    assert client.schema_compatibility(TOPIC) == "BACKWARD"
