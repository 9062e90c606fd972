"""``Pipeline``: a chain of worker stages connected by Pulsar topics."""

from __future__ import annotations

from datetime import datetime
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


class ScalingEngine(StrEnum):
    BUILTIN = "Builtin"
    KEDA = "KEDA"


DEFAULT_TARGET_LAG_SECONDS = 60
"""The objective of an autoscaled stage that names none."""


class ScalingSpec(Model):
    """Replicas of one stage: minReplicas == maxReplicas (the default) is a fixed count;
    maxReplicas > minReplicas makes the stage autoscaled towards targetLagSeconds."""

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "minReplicas must be <= maxReplicas",
                },
                {
                    "rule": "!has(self.targetLagSeconds) || self.maxReplicas > self.minReplicas",
                    "message": "targetLagSeconds needs room to scale: set maxReplicas above minReplicas, "
                    "or remove targetLagSeconds for a fixed replica count",
                },
                {
                    "rule": "self.engine != 'KEDA' || self.maxReplicas > self.minReplicas",
                    "message": "engine KEDA needs room to scale: set maxReplicas above minReplicas",
                },
            ]
        }
    }

    min_replicas: int = Field(
        1,
        ge=0,
        le=100,
        description="Replicas the stage never goes below; 0 lets an idle autoscaled stage "
        "scale to zero (it scales up again on the first message waiting).",
    )
    max_replicas: int = Field(
        1,
        ge=1,
        le=100,
        description="Replicas the stage never goes above; above minReplicas the stage is "
        "autoscaled.",
    )
    target_lag_seconds: int | None = Field(
        None,
        ge=1,
        le=86400,
        description="The objective of an autoscaled stage: what waits on its subscription "
        "(backlog) should be consumed within this many seconds at the current input rate. "
        "Replicas = ceil((input rate + backlog / targetLagSeconds) / measured rate per "
        "replica), bounded by minReplicas and maxReplicas and by what the model backend can "
        f"serve. Default {DEFAULT_TARGET_LAG_SECONDS} when maxReplicas > minReplicas.",
    )
    scale_down_delay_seconds: int = Field(
        60,
        ge=0,
        le=3600,
        description="Fewer replicas must have sufficed for this long before any is removed "
        "(stabilization); scale-up is immediate.",
    )
    idle_seconds_before_zero: int = Field(
        120,
        ge=0,
        le=86400,
        description="With minReplicas 0: no input, no backlog and nothing unacknowledged for "
        "this long before the stage scales to zero.",
    )
    engine: ScalingEngine = Field(
        ScalingEngine.BUILTIN,
        description="Builtin: the operator scales the Deployment itself. KEDA: the operator "
        "renders a KEDA ScaledObject (Pulsar backlog trigger) and KEDA with the HPA scale it.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> ScalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be <= maxReplicas")
        if self.target_lag_seconds is not None and not self.autoscaled:
            raise ValueError(
                "targetLagSeconds needs room to scale: set maxReplicas above minReplicas, "
                "or remove targetLagSeconds for a fixed replica count"
            )
        if self.engine is ScalingEngine.KEDA and not self.autoscaled:
            raise ValueError("engine KEDA needs room to scale: set maxReplicas above minReplicas")
        return self

    @property
    def autoscaled(self) -> bool:
        """Something other than the manifest decides the replica count."""
        return self.max_replicas > self.min_replicas

    @property
    def target_lag_s(self) -> int:
        return self.target_lag_seconds or DEFAULT_TARGET_LAG_SECONDS


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


class StageStatus(Model):
    name: str
    desired_replicas: int = Field(
        0,
        ge=0,
        description="Replicas the stage's Deployment asks for; for an autoscaled stage, the "
        "autoscaler's latest choice.",
    )
    ready_replicas: int = Field(0, ge=0)
    updated_replicas: int = Field(0, ge=0)
    subscription: str = Field("", description="Fully qualified input topic and subscription.")
    backlog: int | None = Field(None, description="Unacknowledged messages on the subscription.")
    scaling_reason: str | None = Field(
        None,
        max_length=1024,
        description="Why the autoscaler chose desiredReplicas (or froze them), e.g. "
        "'ScaledUp: backlog 3000 ...'; none for a fixed replica count.",
    )
    last_scale_time: datetime | None = Field(
        None, description="When the autoscaler last changed the stage's replicas."
    )


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
