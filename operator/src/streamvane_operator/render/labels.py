"""Names, labels and owner references shared by everything the operator creates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MANAGED_BY = "streamvane"
PART_OF = "streamvane"
PIPELINE_LABEL = "streamvane.io/pipeline"
STAGE_LABEL = "streamvane.io/stage"
BACKEND_LABEL = "streamvane.io/inference-backend"
CONFIG_HASH_ANNOTATION = "streamvane.io/config-hash"
FIELD_MANAGER = "streamvane-operator"
AUTOSCALER_FIELD_MANAGER = "streamvane-autoscaler"
"""Owns spec.replicas of autoscaled stages' Deployments (written via the scale subresource)."""

WORKER_COMPONENT = "worker"
INFERENCE_COMPONENT = "inference-server"

MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
WORKER_SELECTOR = f"{MANAGED_SELECTOR},app.kubernetes.io/component={WORKER_COMPONENT}"


@dataclass(frozen=True)
class Owner:
    """The custom resource that owns rendered children (garbage collection, watches)."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def stage_selector(pipeline: str, stage: str) -> dict[str, str]:
    """Labels that select one stage's pods; immutable once a Deployment exists."""
    return {PIPELINE_LABEL: pipeline, STAGE_LABEL: stage}


def stage_labels(pipeline: str, stage: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "streamvane-worker",
        "app.kubernetes.io/instance": pipeline,
        "app.kubernetes.io/component": WORKER_COMPONENT,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **stage_selector(pipeline, stage),
    }


def backend_selector(backend: str) -> dict[str, str]:
    return {BACKEND_LABEL: backend}


def backend_labels(backend: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/instance": backend,
        "app.kubernetes.io/component": INFERENCE_COMPONENT,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **backend_selector(backend),
    }


def stage_object_name(pipeline: str, stage: str) -> str:
    return f"{pipeline}-{stage}"


def backend_object_name(backend: str) -> str:
    return f"{backend}-triton"


def metadata(
    name: str, owner: Owner, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner.reference()],
    }
    if annotations:
        meta["annotations"] = annotations
    return meta
