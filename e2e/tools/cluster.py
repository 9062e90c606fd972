"""kubectl against a real API server (the local stack's or a kind cluster's), for chart tests."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from process_runner.kubectl import kubectl as run_kubectl
from tools.kubeschemas import group_versions


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    """kubectl's stdout; KubectlError when it fails."""
    result = run_kubectl(kubeconfig, *args, stdin=stdin)
    if result.returncode != 0:
        raise KubectlError(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result.stdout


def openapi_documents(kubeconfig: Path) -> list[dict[str, Any]]:
    """Every OpenAPI v3 group-version document the server publishes (CRDs included)."""
    index = json.loads(kubectl(kubeconfig, "get", "--raw", "/openapi/v3"))
    return [
        json.loads(kubectl(kubeconfig, "get", "--raw", f"/openapi/v3/{path}"))
        for path in group_versions(index)
    ]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextmanager
def namespaces(kubeconfig: Path, *names: str) -> Iterator[tuple[str, ...]]:
    """Create namespaces for one test and delete them (and everything in them) afterwards."""
    for name in names:
        kubectl(kubeconfig, "create", "namespace", name)
    try:
        yield names
    finally:
        for name in names:
            kubectl(kubeconfig, "delete", "namespace", name, "--wait=false", "--ignore-not-found")


def service_account_kubeconfig(
    admin_kubeconfig: Path, namespace: str, name: str, path: Path, duration: str = "1h"
) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount (a TokenRequest token), like a pod.

    Requests made with it go through RBAC exactly as the operator's in-cluster requests would.
    """
    token = kubectl(
        admin_kubeconfig, "create", "token", name, "-n", namespace, f"--duration={duration}"
    ).strip()
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    user = f"system:serviceaccount:{namespace}:{name}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": cluster["name"], "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def can_i(kubeconfig: Path, verb: str, resource: str, namespace: str | None = None) -> bool:
    """`kubectl auth can-i`, asked by whoever the kubeconfig authenticates as."""
    scope = ["--namespace", namespace] if namespace else ["--all-namespaces"]
    command = ["kubectl", "--kubeconfig", str(kubeconfig), "auth", "can-i", verb, resource, *scope]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.stdout.strip() not in {"yes", "no"}:
        raise KubectlError(f"kubectl auth can-i {verb} {resource}: {result.stderr}")
    return result.stdout.strip() == "yes"
