"""Against the real kube-apiserver and Pulsar: a Pipeline with a training-examples stage
reconciles into its topics (side input, late events, compacted state), one subscription name
on both of the stage's topics, the schemas of what it reads and writes, and a worker config
that names the side input; a side subscription no stage reads any more is retired."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_reconcile_unchanged_live import Live, create, live, settled

from streamvane_operator.kube.client import KubeClient
from streamvane_operator.pulsar.admin import PulsarAdmin, TopicName
from streamvane_operator.reconcile import pipeline
from streamvane_operator.render.labels import PIPELINE_LABEL
from streamvane_operator.render.topology import STATE_COMPACTION_THRESHOLD_BYTES
from streamvane_worker.config import WorkerConfig

pytestmark = pytest.mark.integration

__all__ = ["live"]  # the fixture, shared with the unchanged-reconcile tests


def live_reconcile(live: Live, owner: Any, spec: dict[str, Any], status: dict[str, Any]) -> Any:
    return pipeline.reconcile_pipeline(live.deps, owner, spec, 2, status)


def join_spec(stack: Any, tenant: str, namespace: str) -> dict[str, Any]:
    return {
        "pulsar": {
            "serviceUrl": stack.pulsar_url,
            "adminUrl": stack.pulsar_admin_url,
            "tenant": tenant,
            "namespace": namespace,
        },
        "deletionPolicy": "Delete",
        "stages": [
            {
                "name": "examples",
                "type": "training-examples",
                "input": {"topic": "recommendations", "subscriptionType": "Key_Shared"},
                "outputs": ["training-examples"],
                "params": {"engagementsTopic": "engagements", "windowSeconds": 300},
            }
        ],
    }


def test_pipeline_with_a_training_examples_stage_reconciles_its_topics_and_subscriptions(
    stack: Any,
    kube: KubeClient,
    namespace: str,
    pulsar_namespace: tuple[str, str],
    live: Live,
    admin: PulsarAdmin,
) -> None:
    tenant, ns = pulsar_namespace
    spec = join_spec(stack, tenant, ns)
    owner = create(kube, "Pipeline", namespace, "loop", spec)

    status = settled(live, owner, spec)

    topics = admin.topics(tenant, ns)
    assert {
        "recommendations",
        "engagements",
        "training-examples",
        "loop-examples-dlq",
        "loop-examples-late",
        "loop-examples-state",
    } <= set(topics)
    subscription = f"{namespace}.loop-examples"
    for topic in ("recommendations", "engagements"):
        assert admin.subscriptions(TopicName(tenant, ns, topic)) == [subscription]
    state = TopicName(tenant, ns, "loop-examples-state")
    assert admin.compaction_threshold(state) == STATE_COMPACTION_THRESHOLD_BYTES
    for topic, record in (("engagements", "Engagement"), ("training-examples", "TrainingExample")):
        schema = admin.schema(TopicName(tenant, ns, topic))
        assert schema is not None and json.loads(schema.definition)["name"] == record
    (config_map,) = kube.list("v1", "ConfigMap", namespace, f"{PIPELINE_LABEL}={owner.name}")
    config = WorkerConfig.model_validate_json(next(iter(config_map["data"].values())))
    assert config.side_inputs() == {"engagementsTopic": f"persistent://{tenant}/{ns}/engagements"}
    assert config.state is not None and config.state.topic.endswith("/loop-examples-state")

    # Reading engagements elsewhere retires the side subscription the Pipeline created
    # (deletionPolicy Delete; Retain keeps it and says so in an event).
    spec["stages"][0]["params"]["engagementsTopic"] = "engagements-v2"
    outcome = live_reconcile(live, owner, spec, status)
    assert outcome.problem is None
    assert admin.subscriptions(TopicName(tenant, ns, "engagements")) == []
    assert admin.subscriptions(TopicName(tenant, ns, "engagements-v2")) == [subscription]
