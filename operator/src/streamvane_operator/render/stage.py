"""One stage -> its ConfigMap, Deployment, metrics Service and PodDisruptionBudget."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from streamvane_operator.api.pipeline import PipelineSpec, StageSpec
from streamvane_operator.render.backend import MODELS_MOUNT
from streamvane_operator.render.labels import (
    CONFIG_HASH_ANNOTATION,
    Owner,
    metadata,
    stage_labels,
    stage_object_name,
    stage_selector,
)
from streamvane_operator.render.pod import (
    CONTAINER_SECURITY,
    http_probe,
    override_fields,
    pod_security,
)
from streamvane_operator.render.worker import (
    CONFIG_DIR,
    CONFIG_FILE_NAME,
    HEALTH_PORT,
    SecretFile,
    WorkerDefaults,
    config_json,
)
from streamvane_worker.config import CONFIG_FILE_ENV, SINGLE_CONSUMER_STAGES, WorkerConfig

WORKER_UID = 65532  # "nonroot" in distroless and our worker image
TERMINATION_GRACE_SECONDS = 30
WORKER_COMMAND = ["python", "-m", "streamvane_worker"]


def render_stage(
    owner: Owner,
    spec: PipelineSpec,
    stage: StageSpec,
    config: WorkerConfig,
    secrets: Sequence[SecretFile],
    model_claim: str | None,
    defaults: WorkerDefaults,
) -> list[dict[str, Any]]:
    """The stage's objects in apply order: the ConfigMap exists before pods mount it.
    ``model_claim``: a PVC to mount read-write at ``MODELS_MOUNT`` (a trainer's model
    repository)."""
    name = stage_object_name(owner.name, stage.name)
    labels = stage_labels(owner.name, stage.name)
    payload = config_json(config)
    config_hash = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(name, owner, labels),
            "data": {CONFIG_FILE_NAME: payload},
        },
        _deployment(owner, spec, stage, name, labels, config_hash, secrets, model_claim, defaults),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(name, owner, labels),
            "spec": {
                "selector": stage_selector(owner.name, stage.name),
                "ports": [{"name": "http-metrics", "port": HEALTH_PORT, "targetPort": "http"}],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(name, owner, labels),
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": stage_selector(owner.name, stage.name)},
            },
        },
    ]


def _deployment(
    owner: Owner,
    spec: PipelineSpec,
    stage: StageSpec,
    name: str,
    labels: dict[str, str],
    config_hash: str,
    secrets: Sequence[SecretFile],
    model_claim: str | None,
    defaults: WorkerDefaults,
) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": name}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    for secret in secrets:
        volumes.append(
            {
                "name": secret.volume,
                "secret": {
                    "secretName": secret.ref.name,
                    "items": [{"key": secret.ref.key, "path": secret.file_name}],
                },
            }
        )
        mounts.append({"name": secret.volume, "mountPath": secret.directory, "readOnly": True})
    if model_claim is not None:
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": model_claim}})
        mounts.append({"name": "models", "mountPath": MODELS_MOUNT})
    container = {
        "name": "worker",
        "image": stage.image or spec.image or defaults.image,
        "command": WORKER_COMMAND,
        "env": [{"name": CONFIG_FILE_ENV, "value": f"{CONFIG_DIR}/{CONFIG_FILE_NAME}"}],
        "ports": [{"name": "http", "containerPort": HEALTH_PORT}],
        "startupProbe": http_probe("/healthz", period=2, failures=60),
        "livenessProbe": http_probe("/healthz", period=10, failures=3),
        "readinessProbe": http_probe("/readyz", period=5, failures=2),
        "resources": {
            "requests": dict(stage.resources.requests),
            "limits": dict(stage.resources.limits),
        },
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": mounts,
        # The worker writes why it could not start there; a crash without one (an
        # interpreter error) shows the end of its log instead.
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod = stage.pod
    # An autoscaled stage's replicas belong to its autoscaler (the operator's scaling loop or
    # KEDA's HPA), which writes them through the scale subresource: the applied manifest
    # leaves the field out, so server-side apply neither owns nor resets it.
    replicas = {} if stage.scaling.autoscaled else {"replicas": stage.scaling.min_replicas}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, owner, labels),
        "spec": {
            **replicas,
            "selector": {"matchLabels": stage_selector(owner.name, stage.name)},
            "strategy": _strategy(stage),
            "template": {
                "metadata": {
                    # The schema refuses extra labels that would replace the operator's.
                    "labels": {**(pod.labels if pod else {}), **labels},
                    # A new config is a new template, so a changed ConfigMap rolls the pods.
                    "annotations": {
                        **(pod.annotations if pod else {}),
                        CONFIG_HASH_ANNOTATION: config_hash,
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "securityContext": pod_security(WORKER_UID),
                    **override_fields(pod),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def _strategy(stage: StageSpec) -> dict[str, Any]:
    """Surge one new pod before the old one goes; an effectively-once stage's new pod cannot
    take over the old one's named producers while it runs, and a single-consumer stage's
    (the trainer's) would resume from a checkpoint the old one is still moving on from, so
    for those the old one goes first."""
    if stage.effectively_once or stage.type in SINGLE_CONSUMER_STAGES:
        return {"type": "Recreate"}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
