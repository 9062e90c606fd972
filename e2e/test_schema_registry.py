"""Message schemas end to end: the operator registers each written topic's schema in Pulsar's
registry before any worker rolls; a compatible change (a new optional field) deploys and the
workers publish there as before; an incompatible one is refused in the Pipeline's status and
nothing rolls, until the spec allows it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from process_runner.fixtures import TENANT, Cluster, cluster_fixture  # noqa: F401
from streamvane_operator.pulsar.admin import PulsarAdmin, TopicName
from streamvane_worker.schemas import message_schemas

pytestmark = pytest.mark.e2e

RELAY = "pipeline-passthrough.yaml"


def older_content_item() -> dict[str, Any]:
    """ContentItem as an earlier version had it: without the optional ``safety`` field."""
    record = copy.deepcopy(message_schemas()["ContentItem"])
    record["fields"] = [f for f in record["fields"] if f["name"] != "safety"]
    return record


def foreign_record() -> dict[str, Any]:
    """What another producer registered: a numeric id and a required field of its own."""
    return {
        "type": "record",
        "name": "ContentItem",
        "fields": [{"name": "id", "type": "long"}, {"name": "tenantId", "type": "long"}],
    }


def registered(cluster: Cluster, schemas: dict[str, dict[str, Any]]) -> PulsarAdmin:
    """The Pulsar namespace with ``schemas`` (local topic -> record) registered by others."""
    admin = PulsarAdmin(cluster.pulsar_admin_url)
    admin.create_tenant(TENANT, admin.clusters())
    admin.create_namespace(TENANT, cluster.pulsar_namespace)
    for local, record in schemas.items():
        topic = TopicName(TENANT, cluster.pulsar_namespace, local)
        admin.create_topic(topic, 0)
        assert admin.register_schema(topic, record) == 0
    return admin


def test_compatible_schema_deploys_and_an_incompatible_one_is_refused_in_status(
    cluster: Cluster,
) -> None:
    admin = registered(
        cluster, {"relay-out": older_content_item(), "relay-final": foreign_record()}
    )
    doc = cluster.sample(RELAY)
    assert cluster.apply(doc).returncode == 0

    # Compatible: our ContentItem adds an optional field to what relay-out holds.
    cluster.wait_ready("relay")
    out = TopicName(TENANT, cluster.pulsar_namespace, "relay-out")
    latest = admin.schema(out)
    assert latest is not None and latest.version == 1 and latest.type == "JSON"
    assert admin.schema_compatibility(out) == "BACKWARD"
    mid = admin.schema(TopicName(TENANT, cluster.pulsar_namespace, "relay-mid"))
    assert mid is not None and mid.version == 0
    sent = [f"s-{i:03d}" for i in range(20)]
    cluster.publish("relay-in", ({"id": i, "title": i} for i in sent))
    assert sorted(d["id"] for d in cluster.consume("relay-out", 20)) == sent
    versions = {
        n: d["metadata"]["resourceVersion"] for n, d in cluster.items("deployments").items()
    }

    # Incompatible: a new stage would write ContentItem where another producer's record is.
    doc["spec"]["stages"].append(
        {
            "name": "third",
            "type": "passthrough",
            "input": {"topic": "relay-out"},
            "outputs": ["relay-final"],
        }
    )
    assert cluster.apply(doc).returncode == 0

    def refused() -> dict[str, Any] | None:
        cond = cluster.condition("relay", "Degraded")
        ok = cond and cond["reason"] == "IncompatibleSchema" and cond["observedGeneration"] == 2
        return cond if ok else None

    cond: Any = cluster.wait("IncompatibleSchema reported", refused, 60)
    final = TopicName(TENANT, cluster.pulsar_namespace, "relay-final")
    assert f"stage 'third' (passthrough) writes ContentItem messages to {final}" in cond["message"]
    assert "'id' is long there, string here; 'tenantId' is there (required)" in cond["message"]
    assert "strategy BACKWARD" in cond["message"]
    assert "keep running" in cond["message"]
    assert (cluster.condition("relay", "Ready") or {}).get("status") == "False"
    schemas = cluster.condition("relay", "SchemasCompatible") or {}
    assert (schemas.get("status"), schemas.get("reason")) == ("False", "IncompatibleSchema")
    # Nothing rolled: no Deployment for the new stage, the running ones untouched and working.
    current = cluster.items("deployments")
    assert {n: d["metadata"]["resourceVersion"] for n, d in current.items()} == versions
    more = [f"t-{i:03d}" for i in range(10)]
    cluster.publish("relay-in", ({"id": i, "title": i} for i in more))
    assert sorted(d["id"] for d in cluster.consume("relay-out", 30))[20:] == more
    foreign = admin.schema(final)
    assert foreign is not None and foreign.version == 0

    # The spec allows any change: the schema is registered and the new stage rolls.
    doc["spec"]["schemaCompatibility"] = "AlwaysCompatible"
    assert cluster.apply(doc).returncode == 0
    pipeline = cluster.wait_ready("relay")
    assert pipeline["status"]["stagesReady"] == "3/3"
    assert (cluster.condition("relay", "SchemasCompatible") or {}).get("status") == "True"
    latest = admin.schema(final)
    assert latest is not None and latest.version == 1
    assert admin.schema_compatibility(final) == "ALWAYS_COMPATIBLE"
    admin.close()
