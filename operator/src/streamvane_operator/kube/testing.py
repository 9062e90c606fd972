"""An in-memory ``Kube`` for unit tests of the reconcilers."""

from __future__ import annotations

import base64
import copy
from typing import Any

from streamvane_operator.api.common import Manifest
from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.kube.errors import KubeNotFound, KubeRejected, KubeUnavailable


def _matches(obj: Manifest, selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj["metadata"].get("labels") or {}
    pairs = (term.split("=", 1) for term in selector.split(","))
    return all(labels.get(key) == value for key, value in pairs)


class FakeKube:
    """Objects keyed by ObjectRef; ``apply`` replaces everything but ``status``.

    ``unavailable`` makes every call fail as if the API server were down.
    """

    def __init__(self, objects: list[Manifest] | None = None) -> None:
        self.objects: dict[ObjectRef, Manifest] = {}
        self.applied: list[ObjectRef] = []
        self.deleted: list[ObjectRef] = []
        self.scaled: list[tuple[ObjectRef, int]] = []
        self.calls: list[tuple[str, str, str]] = []
        """(method, apiVersion, kind) of every call, e.g. for checking RBAC rules."""
        self.unavailable = False
        for obj in objects or []:
            self.objects[ObjectRef.of(obj)] = copy.deepcopy(obj)

    def apply(self, obj: Manifest) -> Manifest:
        ref = ObjectRef.of(obj)
        self._check("apply", ref.api_version, ref.kind)
        stored = copy.deepcopy(obj)
        previous = self.objects.get(ref)
        if previous is not None and "status" in previous:
            stored["status"] = previous["status"]
        if obj["kind"] == "Deployment" and "replicas" not in obj["spec"]:
            # A manifest without replicas leaves them to whoever scales the object (the API
            # server defaults a new one to 1).
            kept = previous["spec"].get("replicas", 1) if previous is not None else 1
            stored["spec"]["replicas"] = kept
            if previous is not None and "managedFields" in previous["metadata"]:
                stored["metadata"]["managedFields"] = previous["metadata"]["managedFields"]
        stored["metadata"].setdefault("generation", 1)
        if previous is not None and previous.get("spec") != stored.get("spec"):
            stored["metadata"]["generation"] = previous["metadata"].get("generation", 1) + 1
        self.objects[ref] = stored
        self.applied.append(ref)
        return copy.deepcopy(stored)

    def delete(self, ref: ObjectRef) -> None:
        self._check("delete", ref.api_version, ref.kind)
        if self.objects.pop(ref, None) is not None:
            self.deleted.append(ref)

    def get(self, ref: ObjectRef) -> Manifest | None:
        self._check("get", ref.api_version, ref.kind)
        obj = self.objects.get(ref)
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        selector: str | None = None,
        *,
        cached: bool = False,
    ) -> list[Manifest]:
        self._check("list", api_version, kind)
        return [
            copy.deepcopy(obj)
            for ref, obj in self.objects.items()
            if (ref.api_version, ref.kind, ref.namespace) == (api_version, kind, namespace)
            and _matches(obj, selector)
        ]

    def patch_status(
        self, ref: ObjectRef, status: dict[str, Any], resource_version: str | None = None
    ) -> None:
        self._check("patch_status", ref.api_version, ref.kind)
        if ref not in self.objects:
            raise KubeNotFound(f"{ref} not found", 404)
        stored = self.objects[ref]["metadata"].get("resourceVersion")
        if resource_version is not None and resource_version != stored:
            raise KubeRejected(f"{ref} changed since resourceVersion {resource_version}", 409)
        self.objects[ref].setdefault("status", {}).update(copy.deepcopy(status))

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        secret = self.get(ObjectRef("v1", "Secret", namespace, name))
        if secret is None:
            raise KubeNotFound(f"Secret {namespace}/{name} not found", 404)
        if key not in secret.get("data", {}):
            raise KubeRejected(f"Secret {namespace}/{name} has no key {key!r}", 404)
        return base64.b64decode(secret["data"][key]).decode()

    def scale(self, ref: ObjectRef, replicas: int, field_manager: str) -> None:
        """Sets spec.replicas and records ``field_manager`` as its owner in managedFields."""
        self._check("scale", ref.api_version, ref.kind)
        if ref not in self.objects:
            raise KubeNotFound(f"{ref} not found", 404)
        obj = self.objects[ref]
        obj["spec"]["replicas"] = replicas
        owners = [
            m for m in obj["metadata"].get("managedFields") or [] if m["manager"] != field_manager
        ]
        owners.append(
            {
                "manager": field_manager,
                "operation": "Apply",
                "subresource": "scale",
                "fieldsV1": {"f:spec": {"f:replicas": {}}},
            }
        )
        obj["metadata"]["managedFields"] = owners
        self.scaled.append((ref, replicas))

    def set_status(self, ref: ObjectRef, status: dict[str, Any]) -> None:
        """What a controller (kubelet, the process runner) would write."""
        self.objects[ref]["status"] = copy.deepcopy(status)

    def _check(self, method: str, api_version: str, kind: str) -> None:
        self.calls.append((method, api_version, kind))
        if self.unavailable:
            raise KubeUnavailable("API server unreachable (fake)")
