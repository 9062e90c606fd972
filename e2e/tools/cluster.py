"""kubectl against a real API server (the local stack's or a kind cluster's), for chart tests."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools.kubeschemas import group_versions


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    command = ["kubectl", "--kubeconfig", str(kubeconfig), *args]
    result = subprocess.run(command, input=stdin, capture_output=True, text=True)
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
