"""``Region``: one member cluster and its Pulsar cluster, as the hub operator reaches them.

Also the placement and rollout parts of a Pipeline that the hub acts on.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, model_validator

from streamvane_operator.api.common import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    PULSAR_NAME,
    Condition,
    Model,
)

RegionName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
"""A Region's name (cluster-scoped object: a DNS label here)."""
PulsarClusterName = Annotated[str, Field(min_length=1, max_length=128)]


def _secret_key(default: str, holds: str) -> Any:
    return Field(
        default,
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description=f"Key of the Secret's data that holds the {holds}.",
    )


class NamespacedSecretRef(Model):
    namespace: str = Field(
        ..., max_length=63, pattern=DNS_LABEL, description="Namespace of the Secret (in the hub)."
    )
    name: str = Field(..., max_length=253, pattern=DNS_SUBDOMAIN, description="Secret name.")


class KubeconfigSecretRef(NamespacedSecretRef):
    key: str = _secret_key("kubeconfig", "kubeconfig")


class TokenSecretRef(NamespacedSecretRef):
    key: str = _secret_key("token", "JWT")


class RegionPulsar(Model):
    cluster: str = Field(
        ...,
        max_length=64,
        pattern=PULSAR_NAME,
        description="The Pulsar cluster name of this region (geo-replication names it).",
    )
    service_url: str = Field(
        ...,
        max_length=512,
        pattern=r"^pulsar(\+ssl)?://[^\s]+$",
        description="Broker URL of this region's Pulsar (workers and peer replicators use it).",
    )
    admin_url: str = Field(
        ...,
        max_length=512,
        pattern=r"^https?://[^\s]+$",
        description="Admin REST URL of this region's Pulsar (topics, stats, replication).",
    )
    auth_secret_ref: TokenSecretRef | None = Field(
        None,
        description="Secret (in the hub) holding a JWT for this Pulsar's admin API (the hub's "
        "replication and gate reads); none means no auth.",
    )


class RegionOverrides(Model):
    inference_backend: str | None = Field(
        None,
        max_length=253,
        pattern=DNS_LABEL,
        description="InferenceBackend every model stage uses in this region, instead of the "
        "one the Pipeline names.",
    )
    image_registry: str | None = Field(
        None,
        max_length=253,
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9.:/_-]*$",
        description="Registry (host[/path]) that replaces the registry of worker images here.",
    )


class RegionSpec(Model):
    kubeconfig_secret_ref: KubeconfigSecretRef = Field(
        ..., description="Secret (in the hub) holding a kubeconfig for this region's cluster."
    )
    pulsar: RegionPulsar
    overrides: RegionOverrides = RegionOverrides()


class RegionStatus(Model):
    reachable: bool | None = Field(None, description="The last probe reached the cluster.")
    operator_version: str = Field(
        "", description="Streamvane operator version seen there (its CRD's label), if any."
    )
    last_probe_time: datetime | None = Field(None, description="When the hub last probed.")
    message: str = Field("", description="Why the region is unreachable, if it is.")
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


# A Pipeline's placement and rollout.


class LabelSelector(Model):
    match_labels: dict[str, str] = Field(
        default_factory=dict, max_length=32, description="Regions carrying all these labels."
    )


class Placement(Model):
    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.regions) != has(self.regionSelector)",
                    "message": "placement needs exactly one of regions or regionSelector",
                }
            ]
        }
    }

    regions: list[RegionName] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Names of the Regions the Pipeline runs in.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    region_selector: LabelSelector | None = Field(
        None, description="Labels selecting the Regions the Pipeline runs in."
    )

    @model_validator(mode="after")
    def _one_of(self) -> Placement:
        if (self.regions is None) == (self.region_selector is None):
            raise ValueError("placement needs exactly one of regions or regionSelector")
        return self


class OnFailure(StrEnum):
    ROLLBACK = "Rollback"
    HALT = "Halt"


class Gates(Model):
    max_dead_letter_ratio: float | None = Field(
        0.05,
        ge=0,
        le=1,
        description="Dead-lettered / published input messages since the revision started in "
        "the region; above this the region fails (1 disables the gate).",
    )
    max_lag_seconds: float | None = Field(
        None,
        ge=0,
        description="Age of the oldest unacknowledged input message; above this the region "
        "fails. Unset: no lag gate.",
    )
    min_throughput_ratio: float | None = Field(
        None,
        ge=0,
        description="Output / input messages since the revision started in the region; below "
        "this the region fails. Unset: no throughput gate.",
    )


class RolloutSpec(Model):
    waves: list[Annotated[list[RegionName], Field(min_length=1, max_length=64)]] | None = Field(
        None,
        min_length=1,
        max_length=16,
        description="Ordered waves of region names; default: the first placed region, then the "
        "rest. Every placed region must be in exactly one wave.",
    )
    bake_seconds: int = Field(
        300, ge=0, le=86_400, description="A wave stays healthy this long before the next starts."
    )
    progress_deadline_seconds: int = Field(
        600,
        ge=1,
        le=86_400,
        description="A wave (or a rollback) must become healthy within this; else it fails.",
    )
    gates: Gates = Gates()
    on_failure: OnFailure = Field(
        OnFailure.ROLLBACK,
        description="Rollback restores the last good revision in the failed wave's regions; "
        "Halt leaves them as they are. Either way no later wave starts.",
    )


class ReplicationSpec(Model):
    clusters: list[PulsarClusterName] = Field(
        default_factory=list,
        max_length=16,
        description="Pulsar clusters (the Regions' pulsar.cluster) the pipeline's namespace is "
        "geo-replicated between. Removing one deletes the namespace's topics there, so it is "
        "refused unless deletionPolicy is Delete.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class RegionPhase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    BAKING = "Baking"
    HEALTHY = "Healthy"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"
    UNREACHABLE = "Unreachable"


class RolloutPhase(StrEnum):
    PROGRESSING = "Progressing"
    BAKING = "Baking"
    COMPLETE = "Complete"
    HALTED = "Halted"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class GateValues(Model):
    dead_letter_ratio: float | None = None
    lag_seconds: float | None = None
    throughput_ratio: float | None = None
    input_messages: int | None = Field(None, description="Input messages the ratios count.")


class Counters(Model):
    """Pulsar message counters of a region's pipeline topics at one moment."""

    input: int = Field(0, ge=0, description="Messages published to the input topics.")
    dead_lettered: int = Field(0, ge=0, description="Messages published to dead-letter topics.")
    output: int = Field(0, ge=0, description="Messages published to the sink topics.")


class RegionRolloutStatus(Model):
    name: str
    phase: RegionPhase = RegionPhase.PENDING
    revision: str = Field("", description="Hub revision the region's member Pipeline runs.")
    gates: GateValues = GateValues()
    baseline: Counters | None = Field(
        None, description="Counters when the region started its revision; gates count from here."
    )
    message: str = ""


class RolloutStatus(Model):
    revision: str = Field("", description="Revision being rolled out (or rolled out).")
    last_good_revision: str = Field("", description="Last revision that passed every wave.")
    wave: int = Field(0, ge=0, description="Current wave, counted from 1 (0: none yet).")
    waves: int = Field(0, ge=0, description="Number of waves.")
    phase: RolloutPhase | None = None
    reason: str = Field(
        "", description="Why the rollout stopped: Unreachable, GateFailed, DeadlineExceeded, ..."
    )
    phase_since: datetime | None = Field(None, description="When the current phase began.")
    message: str = ""
    summary: str = Field("", description="One line for kubectl, e.g. 'wave 1/2 Baking'.")
