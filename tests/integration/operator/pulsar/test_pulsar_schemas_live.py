"""Message schemas in the real Pulsar registry: registration, compatibility strategies, the
refusal the operator reports, and workers' plain-bytes clients on a topic with a schema."""

from __future__ import annotations

import copy
from typing import Any

import pulsar
import pytest

from streamvane_operator.api.pipeline import PipelineSpec, SchemaCompatibility
from streamvane_operator.pulsar.admin import PulsarAdmin, TopicName
from streamvane_operator.pulsar.errors import PulsarIncompatibleSchema
from streamvane_operator.reconcile.schemas import SchemaRefused, ensure_schemas, schema_targets
from streamvane_operator.reconcile.topology import ensure_topology
from streamvane_operator.render.topology import topology
from streamvane_worker.schemas import message_schemas

pytestmark = pytest.mark.integration


def recs_spec(tenant: str, ns: str, policy: str = "Backward") -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "pulsar": {"tenant": tenant, "namespace": ns},
            "schemaCompatibility": policy,
            "stages": [
                {
                    "name": "profile",
                    "type": "user-profile",
                    "input": {"topic": "engagements"},
                    "outputs": ["profiles"],
                },
            ],
        }
    )


def prepared(admin: PulsarAdmin, spec: PipelineSpec) -> list[str]:
    """The topology exists (tenant, namespace, topics); the names of the created topics."""
    topo = topology("k8s", "p", spec)
    changes = ensure_topology(admin, topo, "k8s/p", {}, frozenset())
    return [TopicName.parse(t).local for t in changes.owned_topics]


def with_field(record: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    changed["fields"].append(field)
    return changed


def test_registry_accepts_every_message_schema_and_keeps_its_version_when_sent_again(
    admin: PulsarAdmin, pulsar_namespace: tuple[str, str]
) -> None:
    tenant, ns = pulsar_namespace
    prepared(admin, recs_spec(tenant, ns))
    for name, record in message_schemas().items():
        topic = TopicName(tenant, ns, f"schema-{name.lower()}")
        assert admin.register_schema(topic, record) == 0
        assert admin.register_schema(topic, record) == 0
        latest = admin.schema(topic)
        assert latest is not None and latest.type == "JSON" and latest.version == 0


def test_registry_takes_a_new_optional_field_and_refuses_a_retyped_one_under_backward(
    admin: PulsarAdmin, pulsar_namespace: tuple[str, str]
) -> None:
    tenant, ns = pulsar_namespace
    prepared(admin, recs_spec(tenant, ns))
    topic = TopicName(tenant, ns, "profiles")
    admin.set_schema_compatibility(topic, "BACKWARD")
    assert admin.schema_compatibility(topic) == "BACKWARD"
    base = message_schemas()["UserProfile"]
    assert admin.register_schema(topic, base) == 0

    optional = with_field(base, {"name": "locale", "type": ["null", "string"], "default": None})
    assert admin.register_schema(topic, optional) == 1

    retyped = copy.deepcopy(optional)
    retyped["fields"][0]["type"] = "long"  # userId
    with pytest.raises(PulsarIncompatibleSchema) as refused:
        admin.register_schema(topic, retyped)
    assert "strategy BACKWARD" in str(refused.value)
    latest = admin.schema(topic)
    assert latest is not None and latest.version == 1


def test_ensure_schemas_refuses_a_foreign_incompatible_schema_then_registers_under_the_policy(
    admin: PulsarAdmin, pulsar_namespace: tuple[str, str]
) -> None:
    tenant, ns = pulsar_namespace
    spec = recs_spec(tenant, ns)
    targets = schema_targets(spec, prepared(admin, spec))
    assert [t.topic for t in targets] == ["engagements", "profiles"]
    # Another producer registered its own record first: userId a number, and a required
    # field the stage does not write (a reader of that version cannot do without it).
    profiles = TopicName(tenant, ns, "profiles")
    foreign = with_field(message_schemas()["UserProfile"], {"name": "region", "type": "long"})
    foreign["fields"][0]["type"] = "long"
    admin.register_schema(profiles, foreign)

    with pytest.raises(SchemaRefused) as refused:
        ensure_schemas(admin, tenant, ns, targets, SchemaCompatibility.FULL)

    message = str(refused.value)
    assert f"stage 'profile' (user-profile) writes UserProfile messages to {profiles}" in message
    assert "'userId' is long there, string here" in message
    assert "'region' is there (required), not here" in message
    assert "strategy FULL" in message and "pass Full compatibility" in message
    assert admin.schema_compatibility(profiles) == "FULL"
    assert admin.schema(TopicName(tenant, ns, "engagements")) is not None

    done = ensure_schemas(admin, tenant, ns, targets, SchemaCompatibility.ALWAYS_COMPATIBLE)

    assert done == [f"schema UserProfile of {profiles} (version 1)"]
    assert ensure_schemas(admin, tenant, ns, targets, SchemaCompatibility.ALWAYS_COMPATIBLE) == []


def test_plain_bytes_clients_publish_and_read_on_a_topic_with_a_json_schema(
    stack: Any, admin: PulsarAdmin, pulsar_namespace: tuple[str, str]
) -> None:
    """What workers do: the broker does not hold them to the schema (isSchemaValidationEnforced
    is off by default), so payloads are validated by the workers' models alone."""
    tenant, ns = pulsar_namespace
    prepared(admin, recs_spec(tenant, ns))
    topic = TopicName(tenant, ns, "profiles")
    admin.register_schema(topic, message_schemas()["UserProfile"])
    client = pulsar.Client(stack.pulsar_url)
    try:
        consumer = client.subscribe(str(topic), "it-bytes")
        producer = client.create_producer(str(topic))
        producer.send(b'{"userId": "u1"}')
        producer.send(b"not json")
        got = [consumer.receive(timeout_millis=10_000).data() for _ in range(2)]
    finally:
        client.close()
    assert got == [b'{"userId": "u1"}', b"not json"]
