"""``Pipeline``: a chain of worker stages connected by Pulsar topics."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, model_validator

from streamvane_operator.api.common import (
    DNS_LABEL,
    PULSAR_NAME,
    Condition,
    Model,
    Resources,
    SecretKeyRef,
)
from streamvane_operator.api.region import (
    Placement,
    RegionRolloutStatus,
    ReplicationSpec,
    RolloutSpec,
    RolloutStatus,
)
from streamvane_worker.config import (
    BatchingSettings,
    DeliverySettings,
    StageType,
    SubscriptionType,
)

TopicName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=PULSAR_NAME,
        description="Topic name local to the pipeline's Pulsar tenant/namespace (persistent).",
    ),
]


class DeletionPolicy(StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class PulsarConnection(Model):
    service_url: str = Field(
        "pulsar://127.0.0.1:6650",
        max_length=512,
        pattern=r"^pulsar(\+ssl)?://[^\s]+$",
        description="Broker URL the workers connect to.",
    )
    admin_url: str = Field(
        "http://127.0.0.1:8080",
        max_length=512,
        pattern=r"^https?://[^\s]+$",
        description="Admin REST URL the operator uses to create tenants, topics and subscriptions.",
    )
    tenant: str = Field(
        "streamvane", max_length=64, pattern=PULSAR_NAME, description="Pulsar tenant."
    )
    namespace: str = Field(
        ...,
        max_length=64,
        pattern=PULSAR_NAME,
        description="Pulsar namespace (within the tenant) that holds the pipeline's topics.",
    )
    auth_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret holding a JWT for Pulsar token auth; none means no auth."
    )
    replication: ReplicationSpec | None = Field(
        None,
        description="Geo-replication of the namespace between the placed Regions' Pulsar "
        "clusters (set up by the hub; needs placement).",
    )


class TopicPolicy(Model):
    partitions: int = Field(
        0, ge=0, le=256, description="Partitions of each data topic; 0 means non-partitioned."
    )
    retention_minutes: int = Field(
        1440, ge=-1, description="Acknowledged messages are kept this long; -1 means forever."
    )
    retention_size_mb: int = Field(
        -1,
        ge=-1,
        alias="retentionSizeMB",
        description=(
            "Acknowledged messages are kept up to this size per topic; -1 means no size limit "
            "(time only). Pulsar requires a size above the namespace backlog quota (10 GB by default)."
        ),
    )


class InputSpec(Model):
    topic: TopicName
    subscription: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=PULSAR_NAME,
        description="Subscription name; defaults to <pipeline>-<stage>.",
    )
    subscription_type: SubscriptionType = Field(
        SubscriptionType.SHARED,
        description="Shared scales out; Key_Shared keeps per-key order; Failover is one active consumer.",
    )


class ModelRef(Model):
    backend: str = Field(
        ...,
        max_length=253,
        pattern=DNS_LABEL,
        description="Name of an InferenceBackend in the pipeline's namespace.",
    )
    name: str = Field(..., min_length=1, max_length=128, description="Model name in Triton.")
    version: str = Field(
        "", max_length=16, pattern=r"^[0-9]*$", description="Model version; empty means latest."
    )


class DeliverySpec(Model):
    max_redeliveries: Annotated[int, DeliverySettings.model_fields["max_redeliveries"]]
    negative_ack_delay_ms: Annotated[int, DeliverySettings.model_fields["negative_ack_delay_ms"]]
    dead_letter_topic: TopicName | None = Field(
        None, description="Where bad messages go; defaults to <pipeline>-<stage>-dlq."
    )


class ScalingSpec(Model):
    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "minReplicas must be <= maxReplicas",
                }
            ]
        }
    }

    min_replicas: int = Field(1, ge=0, le=100, description="Replicas the stage never goes below.")
    max_replicas: int = Field(1, ge=1, le=100, description="Replicas the stage never goes above.")

    @model_validator(mode="after")
    def _ordered(self) -> ScalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be <= maxReplicas")
        return self


DEFAULT_RESOURCES = Resources(requests={"cpu": "250m", "memory": "512Mi"}, limits={"memory": "1Gi"})


class StageSpec(Model):
    name: str = Field(
        ...,
        min_length=1,
        max_length=40,
        pattern=DNS_LABEL,
        description="Stage name, unique in the pipeline (a DNS label).",
    )
    type: StageType = Field(..., description="Which worker stage runs.")
    input: InputSpec
    outputs: list[TopicName] = Field(
        default_factory=list,
        max_length=16,
        description="Topics each result is published to; none for a terminal stage.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    model: ModelRef | None = Field(
        None, description="Model and InferenceBackend; required by stage types that infer."
    )
    batching: BatchingSettings = BatchingSettings()
    delivery: DeliverySpec = DeliverySpec.model_validate({})
    scaling: ScalingSpec = ScalingSpec()
    resources: Resources = DEFAULT_RESOURCES
    image: str | None = Field(
        None, max_length=512, description="Worker image; defaults to the pipeline's image."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Stage-type parameters (labels for tagging, categories for safety).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class PipelineSpec(Model):
    pulsar: PulsarConnection
    topics: TopicPolicy = TopicPolicy()
    deletion_policy: DeletionPolicy = Field(
        DeletionPolicy.RETAIN,
        description="Retain keeps topics and subscriptions when the Pipeline is deleted, and the "
        "subscription of a removed stage; Delete removes them.",
    )
    image: str | None = Field(
        None, max_length=512, description="Worker image; defaults to the operator's worker image."
    )
    stages: list[StageSpec] = Field(
        ...,
        min_length=1,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    placement: Placement | None = Field(
        None,
        description="Regions the Pipeline runs in, through the hub operator; none: it runs in "
        "this cluster.",
    )
    rollout: RolloutSpec | None = Field(
        None, description="How a change rolls out across the placed regions (needs placement)."
    )

    @model_validator(mode="after")
    def _regions_need_placement(self) -> PipelineSpec:
        if self.placement is None and (self.rollout is not None or self.pulsar.replication):
            raise ValueError("rollout and pulsar.replication need placement")
        named = self.placement.regions if self.placement else None
        waves = self.rollout.waves if self.rollout else None
        if named is not None and waves is not None:
            in_waves = [r for wave in waves for r in wave]
            if sorted(in_waves) != sorted(set(named)):
                raise ValueError(
                    "rollout.waves must name every region of placement.regions exactly once"
                )
        return self


class StageStatus(Model):
    name: str
    desired_replicas: int = Field(0, ge=0)
    ready_replicas: int = Field(0, ge=0)
    updated_replicas: int = Field(0, ge=0)
    subscription: str = Field("", description="Fully qualified input topic and subscription.")
    backlog: int | None = Field(None, description="Unacknowledged messages on the subscription.")


class PipelineStatus(Model):
    observed_generation: int | None = Field(
        None, description="The spec generation this status describes."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    stages: list[StageStatus] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    stages_ready: str = Field("", description="Ready stages out of all, e.g. 2/3.")
    backlog: int | None = Field(None, description="Total backlog of all stage subscriptions.")
    retiring_subscriptions: list[str] = Field(
        default_factory=list,
        description="Subscriptions no stage reads any more (a stage was removed or reads another "
        "topic), deleted once their workers have disconnected (deletionPolicy Delete).",
    )
    regions: list[RegionRolloutStatus] = Field(
        default_factory=list,
        description="Per placed region: phase, revision, gate values (hub only).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    regions_ready: str = Field("", description="Healthy regions out of all placed, e.g. 2/3.")
    rollout: RolloutStatus | None = Field(None, description="The rollout across regions (hub).")
    replication_clusters: list[str] = Field(
        default_factory=list,
        description="Pulsar clusters the namespace is replicated between, as last applied.",
    )
