"""Point the shipped samples at a running stack: its Pulsar and Triton ports, not the defaults."""

from __future__ import annotations

import copy
from typing import Any

from streamvane_stack.stack import Endpoints

LOCAL_TRITON = "127.0.0.1:8001"
"""The Triton address the local samples name; other addresses (cluster DNS) are left alone."""
LOCAL_TRITON_METRICS = "http://127.0.0.1:8002/metrics"


def for_stack(doc: dict[str, Any], stack: Endpoints) -> dict[str, Any]:
    """A copy of ``doc`` whose Pulsar URLs and trainers' model repository (Pipeline) or local
    Triton URL (InferenceBackend) are the stack's."""
    doc = copy.deepcopy(doc)
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Pipeline" and "pulsar" in spec:
        spec["pulsar"].update(serviceUrl=stack.pulsar_url, adminUrl=stack.pulsar_admin_url)
    for stage in spec.get("stages") or []:
        if "modelRepository" in (stage.get("params") or {}):  # the trainer writes versions there
            stage["params"]["modelRepository"] = str(stack.model_repository)
    endpoint = spec.get("endpoint") or {}
    if doc.get("kind") == "InferenceBackend" and endpoint.get("url") == LOCAL_TRITON:
        endpoint["url"] = stack.triton_grpc
    return doc
