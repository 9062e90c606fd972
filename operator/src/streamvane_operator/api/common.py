"""Building blocks shared by the Streamvane custom resources."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "streamvane.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""What a Service name must be: a DNS label that starts with a letter."""
MAX_NAME = 63
"""The longest label value, DNS label and Service name."""
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
PULSAR_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
QUANTITY = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
"""A TCP port, 1-65535."""
HOST = r"[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?"
IMAGE = (
    r"^([a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?(:[0-9]{1,5})?/)?"
    r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
"""A container image reference: [registry[:port]/]path[:tag][@sha256:digest]."""
Manifest = dict[str, Any]
"""A Kubernetes object as the API serves it."""

CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


def url_pattern(scheme: str, hosts: bool = False) -> str:
    """``scheme://host[:port][/path]`` with a port of 1-65535 when one is given; ``hosts``
    allows a comma-separated list of host[:port] (Pulsar service URLs)."""
    one = rf"{HOST}(:{PORT})?"
    return rf"^{scheme}://{one}{f'(,{one})*' if hosts else ''}(/[^\s]*)?$"


Image = Annotated[
    str,
    Field(
        min_length=1,
        max_length=512,
        pattern=IMAGE,
        description="Container image reference: [registry[:port]/]path[:tag][@sha256:digest].",
    ),
]


class Model(BaseModel):
    """camelCase on the wire, unknown fields refused, immutable once parsed."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class SecretKeyRef(Model):
    name: str = Field(
        ..., max_length=253, pattern=DNS_SUBDOMAIN, description="Secret in the same namespace."
    )
    key: str = Field(
        "token",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key of the Secret's data that holds the value.",
    )


Quantity = Annotated[
    int | Annotated[str, Field(max_length=64, pattern=QUANTITY)],
    Field(description="A Kubernetes quantity, e.g. 500m or 1Gi."),
]


class Resources(Model):
    """Compute resources of one container, as in a Pod spec."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict, max_length=8, description="Resources the scheduler reserves."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, max_length=8, description="Hard caps enforced at run time."
    )


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    """The Kubernetes condition convention (metav1.Condition)."""

    type: str = Field(
        ..., min_length=1, max_length=316, description="Ready, Progressing, Degraded."
    )
    status: ConditionStatus
    reason: str = Field(
        ...,
        min_length=1,
        max_length=1024,
        pattern=CONDITION_REASON,
        description="CamelCase cause, for machines.",
    )
    message: str = Field(
        "", max_length=32768, description="What happened and what to do, for humans."
    )
    last_transition_time: datetime = Field(..., description="When status last changed.")
    observed_generation: int | None = Field(
        None, ge=0, description="Generation of the spec this condition describes."
    )


ConditionType = Literal["Ready", "Progressing", "Degraded"]
