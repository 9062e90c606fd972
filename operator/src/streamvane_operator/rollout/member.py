"""What the hub writes: the member spec of a revision, the member Pipeline of a region, and
the bounded revision history (ControllerRevisions). Pure.

History as ``apps/v1`` ControllerRevisions: the type Kubernetes made for exactly this
(StatefulSet and DaemonSet history): immutable ``data``, an ordering ``revision`` number,
owner references, and ``kubectl get controllerrevisions`` shows them. A rollback writes the
stored spec back verbatim, so it restores the last good revision exactly, whatever the hub
Pipeline says now.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from streamvane_operator.api.common import API_VERSION, Manifest
from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.api.region import RegionSpec

REVISION_LABEL = "streamvane.io/revision"
HUB_PIPELINE_LABEL = "streamvane.io/hub-pipeline"
HUB_MANAGER = "streamvane-hub"
HISTORY_LIMIT = 10
"""ControllerRevisions kept per Pipeline (besides the current and the last good one)."""


def member_spec(spec: PipelineSpec) -> dict[str, Any]:
    """The spec a member runs: without placement, rollout and replication (the hub's)."""
    data = spec.model_dump(by_alias=True, mode="json", exclude_none=True)
    data.pop("placement", None)
    data.pop("rollout", None)
    data["pulsar"].pop("replication", None)
    return data


def revision_of(spec: dict[str, Any]) -> str:
    """A short content hash: the same spec is the same revision, everywhere."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def member_pipeline(
    name: str, namespace: str, revision: str, spec: dict[str, Any], region: RegionSpec
) -> Manifest:
    """The member Pipeline of ``revision`` in ``region``: its Pulsar, its overrides."""
    spec = copy.deepcopy(spec)
    spec["pulsar"].update(serviceUrl=region.pulsar.service_url, adminUrl=region.pulsar.admin_url)
    overrides = region.overrides
    for stage in spec["stages"]:
        if overrides.inference_backend and stage.get("model"):
            stage["model"]["backend"] = overrides.inference_backend
        if overrides.image_registry and stage.get("image"):
            stage["image"] = with_registry(stage["image"], overrides.image_registry)
    if overrides.image_registry and spec.get("image"):
        spec["image"] = with_registry(spec["image"], overrides.image_registry)
    return {
        "apiVersion": API_VERSION,
        "kind": "Pipeline",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                REVISION_LABEL: revision,
                HUB_PIPELINE_LABEL: name,
                "app.kubernetes.io/managed-by": HUB_MANAGER,
            },
        },
        "spec": spec,
    }


def with_registry(image: str, registry: str) -> str:
    """``image`` pulled from ``registry`` instead of the registry it names (if any)."""
    first, _, rest = image.partition("/")
    has_registry = bool(rest) and ("." in first or ":" in first or first == "localhost")
    return f"{registry.rstrip('/')}/{rest if has_registry else image}"


def controller_revision(
    pipeline: str,
    namespace: str,
    owner_reference: dict[str, Any],
    revision: str,
    number: int,
    spec: dict[str, Any],
) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": f"{pipeline}-{revision}",
            "namespace": namespace,
            "labels": {HUB_PIPELINE_LABEL: pipeline, REVISION_LABEL: revision},
            "ownerReferences": [owner_reference],
        },
        "data": {"spec": spec},
        "revision": number,
    }


def prune(history: Sequence[Manifest], keep: Sequence[str], limit: int) -> list[str]:
    """Names of ControllerRevisions to delete: all but the newest ``limit`` and ``keep``."""
    ordered = sorted(history, key=lambda r: int(r.get("revision") or 0), reverse=True)
    return [
        r["metadata"]["name"]
        for r in ordered[limit:]
        if r["metadata"].get("labels", {}).get(REVISION_LABEL) not in keep
    ]
