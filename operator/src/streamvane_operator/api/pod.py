"""Per-stage pod overrides: where and as whom a stage's workers run (GPU nodes, taints).

``affinity``, ``tolerations`` and ``imagePullSecrets`` take Kubernetes' own types; their CRD
schemas are built from the Kubernetes client's models (``V1Affinity``, ...), so the API server
checks them as it checks a Pod, and unknown fields are pruned as in a Pod.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from kubernetes.client import models as k8s
from pydantic import Field, WithJsonSchema, field_validator

from streamvane_operator.api.common import DNS_SUBDOMAIN, Model

Schema = dict[str, Any]

RESERVED_PREFIX = "streamvane.io/"
"""Label and annotation keys of the operator (selector, pipeline, stage, config hash)."""
RESERVED_LABELS = frozenset(
    {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
        "app.kubernetes.io/part-of",
        "app.kubernetes.io/managed-by",
    }
)
"""Recommended labels the operator sets on every worker pod (monitors and policies select
by them)."""
_QUALIFIED_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
LABEL_KEY = rf"^({DNS_SUBDOMAIN[1:-1]}/)?{_QUALIFIED_NAME}$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"

MAX_STRING = 1024
MAX_ITEMS = 64
"""Bounds of Kubernetes' own string and list fields in the CRD (the API server checks a spec
against its schema in time linear in these; Kubernetes' types leave them unbounded)."""

_PRIMITIVES: dict[str, Schema] = {
    "str": {"type": "string", "maxLength": MAX_STRING},
    "int": {"type": "integer", "format": "int64"},
    "bool": {"type": "boolean"},
    "float": {"type": "number"},
    "object": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
}


def kubernetes_schema(type_name: str) -> Schema:
    """The structural schema of a Kubernetes client type (``V1Affinity``, ``list[str]``...)."""
    if type_name in _PRIMITIVES:
        return dict(_PRIMITIVES[type_name])
    if type_name.startswith("list[") and type_name.endswith("]"):
        return {"type": "array", "maxItems": MAX_ITEMS, "items": kubernetes_schema(type_name[5:-1])}
    if type_name.startswith("dict(str, ") and type_name.endswith(")"):
        value = type_name[len("dict(str, ") : -1]
        return {
            "type": "object",
            "maxProperties": MAX_ITEMS,
            "additionalProperties": kubernetes_schema(value),
        }
    model = getattr(k8s, type_name)
    return {
        "type": "object",
        "properties": {
            model.attribute_map[attr]: kubernetes_schema(sub)
            for attr, sub in sorted(model.openapi_types.items())
        },
    }


def _kubernetes(type_name: str, description: str) -> WithJsonSchema:
    return WithJsonSchema({**kubernetes_schema(type_name), "description": description})


def _check_keys(keys: dict[str, str], what: str, reserved: frozenset[str]) -> dict[str, str]:
    for key in keys:
        if len(key) > 317 or not re.match(LABEL_KEY, key):
            raise ValueError(
                f"{what} key {key!r} is not a Kubernetes qualified name ([prefix/]name, the "
                "name 63 characters at most: letters, digits, '-', '_', '.')"
            )
        if key.startswith(RESERVED_PREFIX) or key in reserved:
            raise ValueError(
                f"{what} {key!r} is set by the operator (it selects the stage's pods); "
                f"use a key outside {RESERVED_PREFIX}* and {', '.join(sorted(reserved)) or '-'}"
            )
    return keys


LabelMap = Annotated[
    dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]],
    Field(max_length=32),
]


class PodOverrides(Model):
    """Pod settings of one stage's workers, as in a Pod spec."""

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.labels) || self.labels.all(k, !k.startsWith('"
                    + RESERVED_PREFIX
                    + "') && !(k in ["
                    + ", ".join(f"'{k}'" for k in sorted(RESERVED_LABELS))
                    + "]))",
                    "message": "pod.labels must not set the operator's labels (streamvane.io/*, "
                    "app.kubernetes.io/name, instance, component, part-of, managed-by): they "
                    "select the stage's pods",
                },
                {
                    "rule": "!has(self.annotations) || self.annotations.all(k, "
                    "!k.startsWith('" + RESERVED_PREFIX + "'))",
                    "message": "pod.annotations must not set streamvane.io/* keys: the "
                    "operator's own",
                },
            ]
        }
    }

    node_selector: dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]] = Field(
        default_factory=dict,
        max_length=32,
        description="Node labels the workers' nodes must have (e.g. a GPU node pool).",
    )
    tolerations: Annotated[
        list[dict[str, Any]],
        Field(max_length=32),
        _kubernetes("list[V1Toleration]", "Taints the workers tolerate (e.g. nvidia.com/gpu)."),
    ] = Field(default_factory=list)
    affinity: Annotated[
        dict[str, Any] | None,
        _kubernetes("V1Affinity", "Node and pod (anti-)affinity of the workers."),
    ] = None
    priority_class_name: str | None = Field(
        None, max_length=253, pattern=DNS_SUBDOMAIN, description="PriorityClass of the workers."
    )
    service_account_name: str | None = Field(
        None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="ServiceAccount the workers run as (e.g. for cloud workload identity); its "
        "API token is not mounted: workers never call Kubernetes.",
    )
    image_pull_secrets: Annotated[
        list[dict[str, Any]],
        Field(max_length=16),
        _kubernetes("list[V1LocalObjectReference]", "Secrets for pulling the worker image."),
    ] = Field(default_factory=list)
    labels: LabelMap = Field(
        default_factory=dict,
        description="Extra labels on the workers' pods; the operator's own cannot be replaced.",
    )
    annotations: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict,
        max_length=64,
        description="Extra annotations on the workers' pods.",
    )

    @field_validator("labels")
    @classmethod
    def _own_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return _check_keys(labels, "label", RESERVED_LABELS)

    @field_validator("annotations")
    @classmethod
    def _own_annotations(cls, annotations: dict[str, str]) -> dict[str, str]:
        return _check_keys(annotations, "annotation", frozenset())
