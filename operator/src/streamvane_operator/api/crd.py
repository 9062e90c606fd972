"""CustomResourceDefinitions built from the API models (the models are the source of truth)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from streamvane_operator.api.backend import InferenceBackendSpec, InferenceBackendStatus
from streamvane_operator.api.common import DNS_1035, GROUP, MAX_NAME, VERSION
from streamvane_operator.api.pipeline import PipelineSpec, StoredPipelineStatus
from streamvane_operator.api.region import RegionSpec, RegionStatus
from streamvane_operator.api.schema import Schema, to_structural

CATEGORY = "streamvane"


@dataclass(frozen=True)
class Kind:
    """One custom resource kind: its names, models and ``kubectl get`` columns."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[dict[str, Any], ...]
    description: str
    name_rules: tuple[dict[str, str], ...] = ()
    """CEL rules on the whole object that bound the names derived from metadata.name."""
    scope: str = "Namespaced"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _condition(type_: str, field: str) -> str:
    return f'.status.conditions[?(@.type=="{type_}")].{field}'


PIPELINE = Kind(
    kind="Pipeline",
    plural="pipelines",
    short_names=("svp",),
    spec=PipelineSpec,
    status=StoredPipelineStatus,
    description="A streaming pipeline: worker stages connected by Pulsar topics.",
    name_rules=(
        {
            "rule": f"self.spec.stages.all(s, size(self.metadata.name) + size(s.name) < {MAX_NAME})",
            "message": f"'<pipeline>-<stage>' names each stage's objects and must be at most "
            f"{MAX_NAME} characters: shorten the Pipeline name or the stage names",
        },
    ),
    # Degraded and why first: what an operator of the cluster must act on.
    columns=(
        {"name": "Degraded", "type": "string", "jsonPath": _condition("Degraded", "status")},
        {"name": "Reason", "type": "string", "jsonPath": _condition("Degraded", "reason")},
        {"name": "Ready", "type": "string", "jsonPath": _condition("Ready", "status")},
        {"name": "Stages", "type": "string", "jsonPath": ".status.stagesReady"},
        {"name": "Backlog", "type": "integer", "jsonPath": ".status.backlog"},
        {"name": "Regions", "type": "string", "jsonPath": ".status.regionsReady"},
        {"name": "Rollout", "type": "string", "jsonPath": ".status.rollout.summary"},
        {
            "name": "Message",
            "type": "string",
            "priority": 1,
            "jsonPath": _condition("Degraded", "message"),
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
)

INFERENCE_BACKEND = Kind(
    kind="InferenceBackend",
    plural="inferencebackends",
    short_names=("svib",),
    spec=InferenceBackendSpec,
    status=InferenceBackendStatus,
    description="A Triton Inference Server that pipeline stages call: external or operator-managed.",
    name_rules=(
        {
            "rule": f"size(self.metadata.name) <= {MAX_NAME - len('-triton')}",
            "message": f"'<name>-triton' names a managed server's objects: the name must be at "
            f"most {MAX_NAME - len('-triton')} characters",
        },
    ),
    columns=(
        {"name": "URL", "type": "string", "jsonPath": ".status.url"},
        {"name": "Ready", "type": "string", "jsonPath": _condition("Ready", "status")},
        {"name": "Reason", "type": "string", "jsonPath": _condition("Ready", "reason")},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
)

REGION = Kind(
    kind="Region",
    plural="regions",
    short_names=("svr",),
    spec=RegionSpec,
    status=RegionStatus,
    description="A member cluster and its Pulsar cluster, where the hub places Pipelines.",
    scope="Cluster",
    columns=(
        {"name": "Pulsar", "type": "string", "jsonPath": ".spec.pulsar.cluster"},
        {"name": "Reachable", "type": "boolean", "jsonPath": ".status.reachable"},
        {"name": "Operator", "type": "string", "jsonPath": ".status.operatorVersion"},
        {"name": "Probed", "type": "date", "jsonPath": ".status.lastProbeTime"},
        {"name": "Message", "type": "string", "priority": 1, "jsonPath": ".status.message"},
    ),
)

KINDS = (PIPELINE, INFERENCE_BACKEND, REGION)

NAME = {
    "type": "string",
    "maxLength": MAX_NAME,
    "pattern": DNS_1035,
    "description": "Names Services and labels: a DNS label that starts with a letter "
    "(lowercase letters, digits and '-', no dots).",
}


def schema_of(model: type[BaseModel]) -> Schema:
    return to_structural(model.model_json_schema(by_alias=True))


def crd(kind: Kind) -> dict[str, Any]:
    """The CRD manifest of ``kind``."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/part-of": "streamvane"},
        },
        "spec": {
            "group": GROUP,
            "scope": kind.scope,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.columns),
                    "schema": {
                        "openAPIV3Schema": {
                            "description": kind.description,
                            "type": "object",
                            "required": ["spec"],
                            "x-kubernetes-validations": list(kind.name_rules),
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object", "properties": {"name": NAME}},
                                "spec": schema_of(kind.spec),
                                "status": schema_of(kind.status),
                            },
                        }
                    },
                }
            ],
        },
    }
