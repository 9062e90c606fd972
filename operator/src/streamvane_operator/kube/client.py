"""The Kubernetes calls the reconcilers make, behind a small interface (faked in tests)."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from urllib3.exceptions import HTTPError

from streamvane_operator.api.common import Manifest
from streamvane_operator.kube.errors import (
    KubeError,
    KubeNotFound,
    KubeNotServed,
    KubeRejected,
    KubeUnavailable,
    translate,
)


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Manifest) -> ObjectRef:
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


VERBS = {
    "apply": ("create", "patch"),
    "delete": ("delete",),
    "get": ("get",),
    "list": ("list",),
    "patch_status": ("patch",),
    "scale": ("patch",),
}
"""The API verbs each ``Kube`` method needs (server-side apply may create); ``patch_status``
acts on the status subresource, ``scale`` on the scale subresource. ``streamvane_operator.rbac`` must grant them."""


class Kube(Protocol):
    def apply(self, obj: Manifest) -> Manifest:
        """Server-side apply ``obj`` with the operator's field manager; returns the result."""
        ...

    def delete(self, ref: ObjectRef) -> None:
        """Delete ``ref``; an object already gone is fine."""
        ...

    def get(self, ref: ObjectRef) -> Manifest | None: ...

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        selector: str | None = None,
        *,
        cached: bool = False,
    ) -> list[Manifest]:
        """``cached``: from the API server's watch cache (a moment behind at most, as
        informers list), not a read of every object of the kind in etcd: a label-selected
        list from etcd costs as much as listing them all (0.9 s at 600 Deployments)."""
        ...

    def patch_status(
        self, ref: ObjectRef, status: dict[str, Any], resource_version: str | None = None
    ) -> None:
        """Replace the top-level fields of the status subresource given in ``status``; with
        ``resource_version``, only if the object is still at it (else KubeRejected, 409)."""
        ...

    def secret_value(self, namespace: str, name: str, key: str) -> str: ...

    def scale(self, ref: ObjectRef, replicas: int, field_manager: str) -> None:
        """Server-side apply ``replicas`` to the scale subresource of ``ref`` as
        ``field_manager``, which then owns spec.replicas (even when the value is unchanged)."""
        ...


APPLY_PATCH = "application/apply-patch+yaml"


def apply_patch(obj: Manifest) -> bytes:
    """A server-side apply body as UTF-8 JSON (JSON is YAML). The client's own encoding
    escapes characters beyond the BMP (emoji) as surrogate pairs, which the API server's
    YAML decoder refuses."""
    return json.dumps(obj, ensure_ascii=False).encode()


def api_client(kubeconfig: Path | None, connections: int | None = None) -> ApiClient:
    """From ``kubeconfig`` when given, else in-cluster, else $KUBECONFIG / ~/.kube/config.

    ``connections``: connections kept open to the API server (default: the client's, 5 per
    CPU); beyond them each concurrent call opens, and then drops, a TLS connection of its own.
    """
    configuration = Configuration()
    if kubeconfig is not None:
        kube_config.load_kube_config(
            config_file=str(kubeconfig), client_configuration=configuration
        )
    else:
        try:
            kube_config.load_incluster_config(client_configuration=configuration)
        except kube_config.ConfigException:
            kube_config.load_kube_config(client_configuration=configuration)
    if connections is not None:
        configuration.connection_pool_maxsize = connections
    return ApiClient(configuration)


def _json(response: Any) -> Manifest:
    """The body of an unserialized response (``serialize=False``): the dynamic client's own
    ``ResourceInstance`` wraps every nested field in an object, only to be turned back into
    dicts, at 8x the CPU of decoding the JSON (0.47 vs 0.06 ms per Deployment)."""
    try:
        body: Manifest = json.loads(response.data)
    except ValueError as e:
        raise KubeUnavailable(f"the API server answered with no JSON object: {e}") from e
    return body


NOT_SERVED_TTL_S = 300.0
ANY_CACHED = "0"


class KubeClient:
    """``Kube`` over the official client's dynamic API."""

    def __init__(self, api_client: ApiClient, field_manager: str) -> None:
        self._api_client = api_client
        self._field_manager = field_manager
        self._dynamic: DynamicClient | None = None
        self._not_served: dict[tuple[str, str], float] = {}
        self._clock = time.monotonic
        # The dynamic client's discovery cache is not thread-safe: a lookup that misses
        # re-reads discovery, and another handler thread reading meanwhile gets a KeyError.
        self._discovery = threading.Lock()

    def apply(self, obj: Manifest) -> Manifest:
        ref = ObjectRef.of(obj)
        result = self._call(
            f"apply {ref}",
            lambda: self._client().patch(
                self._resource(ref.api_version, ref.kind),
                body=apply_patch(obj),
                name=ref.name,
                namespace=ref.namespace,
                # With a charset the client sends the body as is (see apply_patch).
                content_type=f"{APPLY_PATCH}; charset=utf-8",
                field_manager=self._field_manager,
                force_conflicts=True,
                serialize=False,
            ),
        )
        return _json(result)

    def delete(self, ref: ObjectRef) -> None:
        try:
            self._call(
                f"delete {ref}",
                lambda: self._client().delete(
                    self._resource(ref.api_version, ref.kind),
                    name=ref.name,
                    namespace=ref.namespace,
                    # No garbage collector is needed to finish a background deletion.
                    body={"propagationPolicy": "Background"},
                    serialize=False,
                ),
            )
        except KubeNotFound:
            return

    def get(self, ref: ObjectRef) -> Manifest | None:
        try:
            result = self._call(
                f"get {ref}",
                lambda: self._client().get(
                    self._resource(ref.api_version, ref.kind),
                    name=ref.name,
                    namespace=ref.namespace,
                    serialize=False,
                ),
            )
        except KubeNotFound:
            return None
        return _json(result)

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        selector: str | None = None,
        *,
        cached: bool = False,
    ) -> list[Manifest]:
        try:
            result = self._call(
                f"list {kind} in {namespace}",
                lambda: self._client().get(
                    self._resource(api_version, kind),
                    namespace=namespace,
                    label_selector=selector,
                    # "0": any version the watch cache holds (the API server's own semantics).
                    resource_version=ANY_CACHED if cached else None,
                    serialize=False,
                ),
            )
        except KubeNotFound as e:
            # Discovery still lists a kind whose CRD was just removed: not served either.
            self._not_served[(api_version, kind)] = self._clock() + NOT_SERVED_TTL_S
            raise KubeNotServed(f"{api_version} {kind} is not served (CRD installed?)", 404) from e
        items = _json(result).get("items") or []
        for item in items:
            # List items omit their type; callers treat them like single objects.
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return list(items)

    def patch_status(
        self, ref: ObjectRef, status: dict[str, Any], resource_version: str | None = None
    ) -> None:
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}  # a precondition
        self._call(
            f"patch status of {ref}",
            lambda: self._client().patch(
                self._resource(ref.api_version, ref.kind).status,
                body=body,
                name=ref.name,
                namespace=ref.namespace,
                content_type="application/merge-patch+json",
                serialize=False,  # nothing is read from the answer
            ),
        )

    def scale(self, ref: ObjectRef, replicas: int, field_manager: str) -> None:
        body = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": ref.name, "namespace": ref.namespace},
            "spec": {"replicas": replicas},
        }
        self._call(
            f"scale {ref} to {replicas}",
            lambda: self._client().server_side_apply(
                self._resource(ref.api_version, ref.kind).scale,
                body=body,
                name=ref.name,
                namespace=ref.namespace,
                field_manager=field_manager,
                force_conflicts=True,
                serialize=False,
            ),
        )

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        secret = self.get(ObjectRef("v1", "Secret", namespace, name))
        if secret is None:
            raise KubeNotFound(f"Secret {namespace}/{name} not found", 404)
        data = secret.get("data") or {}
        if key not in data:
            raise KubeRejected(f"Secret {namespace}/{name} has no key {key!r}", 404)
        return base64.b64decode(data[key]).decode().strip()

    def _client(self) -> DynamicClient:
        if self._dynamic is None:
            with self._discovery:
                if self._dynamic is None:
                    self._dynamic = self._call(
                        "discover API", lambda: DynamicClient(self._api_client)
                    )
        return self._dynamic

    def _resource(self, api_version: str, kind: str) -> Any:
        # A kind not served makes the dynamic client re-read discovery on every lookup; its
        # absence is remembered for a while instead (a CRD installed later is found then).
        key = (api_version, kind)
        if self._clock() < self._not_served.get(key, 0.0):
            raise KubeNotServed(f"{api_version} {kind} is not served (CRD installed?)", 404)
        client = self._client()
        try:
            with self._discovery:
                return client.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError as e:
            self._not_served[key] = self._clock() + NOT_SERVED_TTL_S
            raise KubeNotServed(f"{api_version} {kind} is not served (CRD installed?)", 404) from e

    @staticmethod
    def _call(action: str, fn: Any) -> Any:
        try:
            return fn()
        except KubeError:
            raise
        except (ApiException, HTTPError, OSError) as e:
            raise translate(e, action) from e
