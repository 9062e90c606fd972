"""``Pipeline``: a chain of worker stages connected by Pulsar topics."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, cast

import annotated_types
from pydantic import BaseModel, Field, JsonValue, create_model, model_validator
from pydantic.fields import FieldInfo

from streamvane_operator.api.common import (
    DNS_LABEL,
    PULSAR_NAME,
    Condition,
    Image,
    Model,
    Resources,
    SecretKeyRef,
    url_pattern,
)
from streamvane_operator.api.pod import PodOverrides
from streamvane_operator.api.region import (
    Placement,
    RegionRolloutStatus,
    ReplicationSpec,
    RolloutSpec,
    RolloutStatus,
)
from streamvane_worker.config import (
    PARAMS_BY_STAGE,
    SINGLE_CONSUMER_STAGES,
    BatchingSettings,
    DeliveryGuarantee,
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


class SchemaCompatibility(StrEnum):
    """Pulsar's schema compatibility strategies, as the registry applies them to a new version
    of a topic's schema against the registered ones."""

    BACKWARD = "Backward"
    BACKWARD_TRANSITIVE = "BackwardTransitive"
    FORWARD = "Forward"
    FORWARD_TRANSITIVE = "ForwardTransitive"
    FULL = "Full"
    FULL_TRANSITIVE = "FullTransitive"
    ALWAYS_COMPATIBLE = "AlwaysCompatible"


class PulsarTLS(Model):
    ca_secret_ref: SecretKeyRef | None = Field(
        None,
        description="Secret key holding the CA bundle (PEM) that signed the brokers' "
        "certificates: the operator trusts it for an https:// adminUrl, and it is mounted into "
        "workers for a pulsar+ssl:// serviceUrl. Unset trusts the system roots.",
    )


TLS_URLS = "serviceUrl: pulsar+ssl:// or adminUrl: https://"


class PulsarConnection(Model):
    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.tls) || !has(self.tls.caSecretRef) || "
                    "self.serviceUrl.startsWith('pulsar+ssl://') || "
                    "self.adminUrl.startsWith('https://')",
                    "message": f"tls.caSecretRef needs {TLS_URLS}",
                }
            ]
        }
    }

    service_url: str = Field(
        "pulsar://127.0.0.1:6650",
        max_length=512,
        pattern=url_pattern("pulsar(\\+ssl)?", hosts=True),
        description="Broker URL the workers connect to.",
    )
    admin_url: str = Field(
        "http://127.0.0.1:8080",
        max_length=512,
        pattern=url_pattern("https?"),
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
        None,
        description="Secret key holding a JWT for Pulsar token auth, used by the operator and "
        "mounted into workers (which re-read it, so the token can rotate); none means no auth.",
    )
    tls: PulsarTLS | None = Field(
        None, description="How the operator and workers verify the brokers' TLS certificates."
    )

    @model_validator(mode="after")
    def _ca_needs_tls(self) -> PulsarConnection:
        if self.ca_secret_ref is not None and not (self.tls_workers or self.tls_admin):
            raise ValueError(f"tls.caSecretRef needs {TLS_URLS}")
        return self

    @property
    def ca_secret_ref(self) -> SecretKeyRef | None:
        return self.tls.ca_secret_ref if self.tls else None

    @property
    def tls_workers(self) -> bool:
        """Workers connect over TLS."""
        return self.service_url.startswith("pulsar+ssl://")

    @property
    def tls_admin(self) -> bool:
        """The operator calls the admin API over TLS."""
        return self.admin_url.startswith("https://")

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


class InitialPosition(StrEnum):
    EARLIEST = "Earliest"
    LATEST = "Latest"


class InputSpec(Model):
    topic: TopicName
    subscription: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=PULSAR_NAME,
        description="Subscription name; defaults to <namespace>.<pipeline>-<stage> (the "
        "Kubernetes namespace, so same-named Pipelines of two namespaces never share one).",
    )
    subscription_type: SubscriptionType = Field(
        SubscriptionType.SHARED,
        description="Shared scales out; Key_Shared keeps per-key order; Failover is one active consumer.",
    )
    initial_position: InitialPosition | None = Field(
        None,
        description="Where a new subscription starts. Default: Earliest on a topic this "
        "Pipeline created (nothing published is skipped), Latest on a topic that already "
        "existed (another pipeline's output or input: its history is not replayed). An "
        "existing subscription keeps its position.",
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
    guarantee: DeliveryGuarantee = Field(
        DeliveryGuarantee.AT_LEAST_ONCE,
        description="AtLeastOnce (default): every input's outputs are written at least once; a "
        "fault can write some twice. EffectivelyOnce: each input's outputs are written once, "
        "across worker kills and broker restarts (broker de-duplication of the output topics, "
        "enabled by the operator); needs input.subscriptionType Failover and "
        "scaling.maxReplicas 1. Dead letters and delayed retries stay at-least-once.",
    )
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


def _optional(field: FieldInfo) -> FieldInfo:
    """``field`` with its constraints and docs, but optional: which fields a stage type needs
    is checked per type (CEL rules on the stage, and the worker's own model)."""
    return FieldInfo.merge_field_infos(field, default=None)


def _params_rules() -> list[JsonValue]:
    """CEL rules tying each params field to the stage types that take it."""
    takers: dict[str, list[str]] = {}
    rules: list[JsonValue] = []
    for stage_type, model in PARAMS_BY_STAGE.items():
        for field in model.model_fields.values():
            takers.setdefault(str(field.alias), []).append(stage_type.value)
        for field in model.model_fields.values():
            if field.is_required():
                rules.append(
                    {
                        "rule": f"self.type != '{stage_type.value}' || "
                        f"(has(self.params) && has(self.params.{field.alias}))",
                        "message": f"stage type {stage_type.value} needs params.{field.alias}",
                    }
                )
    for name, types in takers.items():
        listed = ", ".join(f"'{t}'" for t in types)
        rules.append(
            {
                "rule": f"!has(self.params) || !has(self.params.{name}) || self.type in [{listed}]",
                "message": f"params.{name} is only for stage type {' or '.join(types)}",
            }
        )
    return rules


def _shared(takers: list[tuple[StageType, FieldInfo]]) -> FieldInfo:
    """One field for a params name several stage types take: the first type's own field when
    they all agree, otherwise each type's description and the loosest bounds they share (each
    type's own model checks its own bounds, ``_stage_problems``)."""
    first = takers[0][1]
    if all(repr(field) == repr(first) for _, field in takers):
        return _optional(first)
    ge: list[float] = [
        cast(float, m.ge)
        for _, f in takers
        for m in f.metadata
        if isinstance(m, annotated_types.Ge)
    ]
    le: list[float] = [
        cast(float, m.le)
        for _, f in takers
        for m in f.metadata
        if isinstance(m, annotated_types.Le)
    ]
    field = FieldInfo.merge_field_infos(
        _optional(first), description=" ".join(f"{t.value}: {f.description}" for t, f in takers)
    )
    field.metadata = [
        *(m for m in field.metadata if not isinstance(m, annotated_types.Ge | annotated_types.Le)),
        *([annotated_types.Ge(min(ge))] if len(ge) == len(takers) else []),
        *([annotated_types.Le(max(le))] if len(le) == len(takers) else []),
    ]
    return field


_EFFECTIVELY_ONCE = DeliveryGuarantee.EFFECTIVELY_ONCE.value
EFFECTIVELY_ONCE_NEEDS_FAILOVER = (
    f"delivery.guarantee {_EFFECTIVELY_ONCE} needs input.subscriptionType Failover: one "
    "active consumer per input partition, so outputs are written in input order and a "
    "restarted worker resumes where the last one stopped"
)
EFFECTIVELY_ONCE_NEEDS_ONE_REPLICA = (
    f"delivery.guarantee {_EFFECTIVELY_ONCE} needs scaling.maxReplicas 1: its output "
    "producers are named after the stage and input partition and only one process may hold "
    "a name (under Failover more replicas would only stand by); use AtLeastOnce to scale out"
)


def _delivery_rules() -> list[JsonValue]:
    """CEL rules refusing what cannot be effectively-once (mirrored by StageSpec)."""
    eo = (
        "has(self.delivery) && has(self.delivery.guarantee) && "
        f"self.delivery.guarantee == '{_EFFECTIVELY_ONCE}'"
    )
    return [
        {
            "rule": f"!({eo}) || (has(self.input.subscriptionType) && "
            "self.input.subscriptionType == 'Failover')",
            "message": EFFECTIVELY_ONCE_NEEDS_FAILOVER,
        },
        {
            "rule": f"!({eo}) || !has(self.scaling) || !has(self.scaling.maxReplicas) || "
            "self.scaling.maxReplicas == 1",
            "message": EFFECTIVELY_ONCE_NEEDS_ONE_REPLICA,
        },
    ]


def single_consumer_problem(stage_type: StageType) -> str:
    return (
        f"stage type {stage_type.value} learns from every example in one process: it needs "
        "input.subscriptionType Failover and scaling.maxReplicas 1"
    )


def _single_consumer_rules() -> list[JsonValue]:
    """CEL rules for the stage types one process must run (mirrored by StageSpec)."""
    return [
        {
            "rule": f"self.type != '{stage_type.value}' || (has(self.input.subscriptionType) "
            "&& self.input.subscriptionType == 'Failover' && (!has(self.scaling) || "
            "!has(self.scaling.maxReplicas) || self.scaling.maxReplicas == 1))",
            "message": single_consumer_problem(stage_type),
        }
        for stage_type in sorted(SINGLE_CONSUMER_STAGES)
    ]


def _params_model() -> type[BaseModel]:
    takers: dict[str, list[tuple[StageType, FieldInfo]]] = {}
    for stage_type, model in PARAMS_BY_STAGE.items():
        for name, field in model.model_fields.items():
            takers.setdefault(name, []).append((stage_type, field))
    fields: dict[str, Any] = {
        name: (each[0][1].annotation | None, _shared(each))  # type: ignore[operator]
        for name, each in takers.items()
    }
    return create_model("StageParams", __base__=Model, **fields)


if TYPE_CHECKING:
    StageParams = Model
else:
    StageParams = _params_model()
"""Every stage type's params (the union of the worker's params models, all optional);
``_params_rules`` on StageSpec says which belong to which type."""


DEFAULT_RESOURCES = Resources(requests={"cpu": "250m", "memory": "512Mi"}, limits={"memory": "1Gi"})


class StageSpec(Model):
    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": _params_rules()
            + _delivery_rules()
            + _single_consumer_rules()
        }
    }

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
    image: Image | None = Field(None, description="Worker image; defaults to the pipeline's image.")
    pod: PodOverrides | None = Field(
        None,
        description="Scheduling and identity of the stage's worker pods: nodeSelector, "
        "tolerations, affinity, priorityClassName, serviceAccountName, imagePullSecrets, "
        "extra labels and annotations.",
    )
    params: StageParams = Field(
        default_factory=lambda: StageParams(),
        description="Stage-type parameters: labels, topK, minScore, minMargin, mode, headModel "
        "and modelVersionsTopic for tagging; categories "
        "for safety; catalogueTopic, halfLifeS, eventWeights, dwellWeight, dwellCapMs, "
        "historySize, maxUsers and userTtlS for user-profile; catalogueTopic, topK, "
        "excludeReview, index, snapshotDir and snapshotIntervalS for candidate-retrieval; "
        "catalogueTopic, topK and modelVersionsTopic for ranking; engagementsTopic, "
        "windowSeconds, allowedLatenessSeconds, idleFlushSeconds, positiveEvents, minDwellMs, "
        "negativeSampleRate, lateTopic and maxRequests for training-examples; "
        "modelRepository, exportEveryExamples, exportIntervalS, evaluationExamples, "
        "promotionMargin, learningRate, pinnedVersion and keepVersions for online-training; "
        "labels and negativeSampleRate for label-examples; "
        "none for passthrough and text-embedding.",
    )

    @model_validator(mode="after")
    def _effectively_once_possible(self) -> StageSpec:
        if self.delivery.guarantee is DeliveryGuarantee.EFFECTIVELY_ONCE:
            if self.input.subscription_type is not SubscriptionType.FAILOVER:
                raise ValueError(EFFECTIVELY_ONCE_NEEDS_FAILOVER)
            if self.scaling.max_replicas != 1:
                raise ValueError(EFFECTIVELY_ONCE_NEEDS_ONE_REPLICA)
        if self.type in SINGLE_CONSUMER_STAGES and (
            self.input.subscription_type is not SubscriptionType.FAILOVER
            or self.scaling.max_replicas != 1
        ):
            raise ValueError(single_consumer_problem(self.type))
        return self

    @property
    def effectively_once(self) -> bool:
        return self.delivery.guarantee is DeliveryGuarantee.EFFECTIVELY_ONCE

    def typed_params(self) -> dict[str, Any]:
        """The params as the stage type's own model takes them (worker config ``params``)."""
        return self.params.model_dump(by_alias=True, exclude_unset=True, mode="json")


class PipelineSpec(Model):
    pulsar: PulsarConnection
    topics: TopicPolicy = TopicPolicy()
    deletion_policy: DeletionPolicy = Field(
        DeletionPolicy.RETAIN,
        description="Retain keeps topics and subscriptions when the Pipeline is deleted, and the "
        "subscription of a removed stage; Delete removes them.",
    )
    schema_compatibility: SchemaCompatibility = Field(
        SchemaCompatibility.BACKWARD,
        description="How the message schema of each topic a stage writes (and of the input "
        "topics the Pipeline created) may change: the operator registers it in Pulsar's schema "
        "registry under this strategy before any worker rolls, and refuses the change "
        "(IncompatibleSchema) if the registry does. Backward: readers of the new schema read "
        "data of the latest registered one (e.g. a new optional field); Forward: readers of the "
        "latest read the new; Full: both; *Transitive: against every registered version, not "
        "only the latest; AlwaysCompatible: any change.",
    )
    image: Image | None = Field(
        None, description="Worker image; defaults to the operator's worker image."
    )
    shared_outputs: list[TopicName] = Field(
        default_factory=list,
        max_length=64,
        description="Topics owned by another Pipeline that stages may publish to. Writing into "
        "another pipeline's topic is refused unless it is listed here; reading one needs "
        "nothing.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
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


class StagePhase(StrEnum):
    PENDING = "Pending"
    ROLLING_OUT = "RollingOut"
    READY = "Ready"
    SCALED_TO_ZERO = "ScaledToZero"
    FAILING = "Failing"


class StageStatus(Model):
    name: str
    phase: StagePhase = Field(
        StagePhase.PENDING,
        description="Pending: no workers yet; RollingOut: workers starting or being replaced; "
        "Ready: every desired worker serves; ScaledToZero: no worker runs by design (0 desired "
        "replicas); Failing: workers crash or cannot start (message says why).",
    )
    message: str = Field("", max_length=2048, description="Why the stage is in its phase.")
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


class StageAutoscaling(Model):
    """One autoscaled stage, as the operator's autoscaler last saw it."""

    name: str
    desired_replicas: int = Field(0, ge=0, description="The replicas the autoscaler chose.")
    scaling_reason: str = Field(
        "",
        max_length=1024,
        description="Why the autoscaler chose desiredReplicas (or froze them), e.g. "
        "'ScaledUp: backlog 3000 ...'.",
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
    created_topics: list[str] = Field(
        default_factory=list,
        description="Topics this Pipeline created (and owns): deletionPolicy Delete removes "
        "these, and only these, unless other subscriptions still read them.",
    )
    created_subscriptions: list[str] = Field(
        default_factory=list,
        description="Subscriptions this Pipeline created, as topic#subscription: deletionPolicy "
        "Delete removes them. Deleting a Pipeline that created nothing never calls Pulsar.",
    )
    regions: list[RegionRolloutStatus] = Field(
        default_factory=list,
        description="Per placed region: phase, revision, gate values (hub only).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    regions_ready: str | None = Field(
        None, description="Healthy regions out of all placed, e.g. 2/3."
    )
    rollout: RolloutStatus | None = Field(None, description="The rollout across regions (hub).")
    replication_clusters: list[str] = Field(
        default_factory=list,
        description="Pulsar clusters the namespace is replicated between, as last applied.",
    )


class StoredPipelineStatus(PipelineStatus):
    """The whole status subresource: the reconcile's fields (PipelineStatus) and the one the
    autoscaler alone writes. Each writer replaces only its own top-level fields, so neither
    drops what the other wrote."""

    autoscaling: list[StageAutoscaling] = Field(
        default_factory=list,
        description="Per stage the operator autoscales (scaling.engine Builtin): the "
        "autoscaler's latest choice, why, and when it last changed the replicas.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
