"""InferenceBackend -> the address stages use, and for managed backends a Triton Deployment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamvane_operator.api.backend import (
    TRITON_GRPC_PORT,
    TRITON_HTTP_PORT,
    TRITON_METRICS_PORT,
    InferenceBackendSpec,
    ManagedSpec,
    TLSSpec,
)
from streamvane_operator.render.labels import (
    Owner,
    backend_labels,
    backend_object_name,
    backend_selector,
    metadata,
)
from streamvane_operator.render.pod import CONTAINER_SECURITY, http_probe, pod_security

TRITON_UID = 1000  # the triton-server user of NGC images
MODELS_MOUNT = "/models"


@dataclass(frozen=True)
class ResolvedBackend:
    """What a worker needs to reach a backend."""

    url: str
    timeout_ms: int
    tls: TLSSpec = TLSSpec()
    metrics_url: str | None = None
    """Triton's Prometheus metrics, read by the autoscaler; None when unknown."""
    model_claim: str | None = None
    """The PVC holding a managed server's model repository (at ``MODELS_MOUNT``): where an
    online-training stage writes its versions."""


def resolve(name: str, namespace: str, spec: InferenceBackendSpec) -> ResolvedBackend:
    if spec.endpoint is not None:
        e = spec.endpoint
        return ResolvedBackend(e.url, spec.timeouts.request_ms, e.tls, e.metrics_url)
    host = f"{backend_object_name(name)}.{namespace}.svc"
    return ResolvedBackend(
        f"{host}:{TRITON_GRPC_PORT}",
        spec.timeouts.request_ms,
        metrics_url=f"http://{host}:{TRITON_METRICS_PORT}/metrics",
        model_claim=spec.managed.model_repository.persistent_volume_claim if spec.managed else None,
    )


def render_managed(owner: Owner, spec: ManagedSpec) -> list[dict[str, Any]]:
    """Deployment and Service of an operator-managed Triton server."""
    name = backend_object_name(owner.name)
    labels = backend_labels(owner.name)
    return [
        _deployment(owner, spec, name, labels),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(name, owner, labels),
            "spec": {
                "selector": backend_selector(owner.name),
                "ports": [
                    {"name": "grpc", "port": TRITON_GRPC_PORT, "targetPort": "grpc"},
                    {"name": "http", "port": TRITON_HTTP_PORT, "targetPort": "http"},
                    {"name": "metrics", "port": TRITON_METRICS_PORT, "targetPort": "metrics"},
                ],
            },
        },
    ]


def model_control_args(spec: ManagedSpec) -> list[str]:
    """Explicit model control loads every model at start (as the default mode does), then
    new versions when a trainer asks through the repository API."""
    if spec.model_control == "explicit":
        return ["--model-control-mode=explicit", "--load-model=*"]
    return []


def _deployment(
    owner: Owner, spec: ManagedSpec, name: str, labels: dict[str, str]
) -> dict[str, Any]:
    limits: dict[str, Any] = dict(spec.resources.limits)
    if spec.gpus:
        limits["nvidia.com/gpu"] = spec.gpus
    repository = spec.model_repository
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if repository.persistent_volume_claim:
        volumes.append(
            {
                "name": "models",
                "persistentVolumeClaim": {
                    "claimName": repository.persistent_volume_claim,
                    "readOnly": True,
                },
            }
        )
        mounts.append({"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True})
    container: dict[str, Any] = {
        "name": "triton",
        "image": spec.image,
        "command": ["tritonserver"],
        "args": [
            f"--model-repository={repository.uri}",
            f"--grpc-port={TRITON_GRPC_PORT}",
            f"--http-port={TRITON_HTTP_PORT}",
            f"--metrics-port={TRITON_METRICS_PORT}",
            *model_control_args(spec),
        ],
        "ports": [
            {"name": "grpc", "containerPort": TRITON_GRPC_PORT},
            {"name": "http", "containerPort": TRITON_HTTP_PORT},
            {"name": "metrics", "containerPort": TRITON_METRICS_PORT},
        ],
        "resources": {"requests": dict(spec.resources.requests), "limits": limits},
        "startupProbe": http_probe("/v2/health/ready", period=5, failures=120),
        "readinessProbe": http_probe("/v2/health/ready", period=5, failures=3),
        "livenessProbe": http_probe("/v2/health/live", period=10, failures=3),
        "volumeMounts": mounts,
        "securityContext": CONTAINER_SECURITY,
    }
    if repository.credentials_secret_ref is not None:
        container["envFrom"] = [{"secretRef": {"name": repository.credentials_secret_ref.name}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, owner, labels),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": backend_selector(owner.name)},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(TRITON_UID),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
