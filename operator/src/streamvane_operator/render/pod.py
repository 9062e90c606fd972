"""Pod-spec fragments shared by the workloads the operator renders."""

from __future__ import annotations

from typing import Any

from streamvane_operator.api.pod import PodOverrides


def http_probe(path: str, *, period: int, failures: int, port: str = "http") -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
    }


CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
"""Non-root, immutable root filesystem; writable paths are emptyDir mounts."""


def pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def override_fields(pod: PodOverrides | None) -> dict[str, Any]:
    """The Pod spec fields a stage's ``pod`` sets; those it leaves empty are not rendered."""
    if pod is None:
        return {}
    fields: dict[str, Any] = {
        "nodeSelector": dict(pod.node_selector),
        "tolerations": [dict(t) for t in pod.tolerations],
        "affinity": dict(pod.affinity or {}),
        "priorityClassName": pod.priority_class_name,
        "serviceAccountName": pod.service_account_name,
        "imagePullSecrets": [dict(s) for s in pod.image_pull_secrets],
    }
    return {key: value for key, value in fields.items() if value}
