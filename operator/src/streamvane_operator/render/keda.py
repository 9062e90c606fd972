"""``engine: KEDA`` stages -> a KEDA ScaledObject each (Pulsar backlog trigger on the stage's
subscription), and a TriggerAuthentication with the pipeline's Pulsar token when it has one.

KEDA's Pulsar scaler knows the backlog only: replicas = ceil(backlog / msgBacklogThreshold).
The threshold is what one replica drains within targetLagSeconds at the policy's prior rate,
the closest KEDA comes to the objective; KEDA's cooldown and the HPA's scale-down window take
idleSecondsBeforeZero and scaleDownDelaySeconds.
"""

from __future__ import annotations

import math
from typing import Any

from streamvane_operator.api.pipeline import PipelineSpec, ScalingEngine, StageSpec
from streamvane_operator.render.labels import (
    STAGE_LABEL,
    Owner,
    metadata,
    stage_labels,
    stage_object_name,
)
from streamvane_operator.render.topology import qualified

KEDA_API_VERSION = "keda.sh/v1alpha1"
KEDA_KINDS = ("ScaledObject", "TriggerAuthentication")
POLLING_INTERVAL_S = 10
RATE_PER_REPLICA_PRIOR = 5.0
"""Messages per second one replica is assumed to drain (the Builtin policy's prior)."""


def keda_stages(spec: PipelineSpec) -> list[StageSpec]:
    return [s for s in spec.stages if s.scaling.engine is ScalingEngine.KEDA]


def render_keda(owner: Owner, spec: PipelineSpec, subscriptions: dict[str, str]) -> list[Any]:
    """``subscriptions``: stage -> its subscription name. Empty without KEDA stages."""
    stages = keda_stages(spec)
    if not stages:
        return []
    auth = spec.pulsar.auth_secret_ref
    auth_name = f"{owner.name}-pulsar"
    objects: list[dict[str, Any]] = []
    if auth is not None:
        objects.append(
            {
                "apiVersion": KEDA_API_VERSION,
                "kind": "TriggerAuthentication",
                "metadata": metadata(auth_name, owner, _pipeline_labels(owner.name)),
                "spec": {
                    "secretTargetRef": [
                        {"parameter": "bearerToken", "name": auth.name, "key": auth.key}
                    ]
                },
            }
        )
    for stage in stages:
        name = stage_object_name(owner.name, stage.name)
        scaling = stage.scaling
        threshold = max(1, math.ceil(scaling.target_lag_s * RATE_PER_REPLICA_PRIOR))
        trigger: dict[str, Any] = {
            "type": "pulsar",
            "metadata": {
                "adminURL": spec.pulsar.admin_url,
                "topic": qualified(spec.pulsar.tenant, spec.pulsar.namespace, stage.input.topic),
                "isPartitionedTopic": str(spec.topics.partitions > 0).lower(),
                "subscription": subscriptions[stage.name],
                "msgBacklogThreshold": str(threshold),
                "activationMsgBacklogThreshold": "0",
            },
        }
        if auth is not None:
            trigger["metadata"]["authModes"] = "bearer"
            trigger["authenticationRef"] = {"name": auth_name}
        objects.append(
            {
                "apiVersion": KEDA_API_VERSION,
                "kind": "ScaledObject",
                "metadata": metadata(name, owner, stage_labels(owner.name, stage.name)),
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "pollingInterval": POLLING_INTERVAL_S,
                    "cooldownPeriod": scaling.idle_seconds_before_zero,
                    "minReplicaCount": scaling.min_replicas,
                    "maxReplicaCount": scaling.max_replicas,
                    "advanced": {
                        "horizontalPodAutoscalerConfig": {
                            "behavior": {
                                "scaleDown": {
                                    "stabilizationWindowSeconds": scaling.scale_down_delay_seconds
                                }
                            }
                        }
                    },
                    "triggers": [trigger],
                },
            }
        )
    return objects


def _pipeline_labels(pipeline: str) -> dict[str, str]:
    """Labels of a pipeline-wide object: no stage label (it belongs to no stage)."""
    labels = stage_labels(pipeline, "")
    del labels[STAGE_LABEL]
    return labels
