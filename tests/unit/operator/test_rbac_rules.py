"""The RBAC rules grant exactly what the operator calls: reconcilers and kopf handlers."""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from streamvane_operator import handlers
from streamvane_operator.api.common import API_VERSION
from streamvane_operator.config import OperatorConfig
from streamvane_operator.kube.client import VERBS, ObjectRef
from streamvane_operator.kube.testing import FakeKube
from streamvane_operator.pulsar.testing import FakePulsar
from streamvane_operator.rbac import CLUSTER_RULES, NAMESPACED_RULES
from streamvane_operator.reconcile import autoscale, backend, pipeline
from streamvane_operator.reconcile.common import Deps
from streamvane_operator.render.worker import WorkerDefaults

PLURALS = {
    ("v1", "ConfigMap"): ("", "configmaps"),
    ("v1", "Service"): ("", "services"),
    ("v1", "Secret"): ("", "secrets"),
    ("v1", "Pod"): ("", "pods"),
    ("policy/v1", "PodDisruptionBudget"): ("policy", "poddisruptionbudgets"),
    ("apps/v1", "Deployment"): ("apps", "deployments"),
    ("keda.sh/v1alpha1", "ScaledObject"): ("keda.sh", "scaledobjects"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): ("keda.sh", "triggerauthentications"),
    (API_VERSION, "Pipeline"): ("streamvane.io", "pipelines"),
    (API_VERSION, "InferenceBackend"): ("streamvane.io", "inferencebackends"),
}
PEERING_VERBS = ("list", "watch", "patch")
"""kopf's peering: a watch on the peering object, keep-alives patched into its status."""
KOPF_ALWAYS = {("", "events", "create")} | {("kopf.dev", "kopfpeerings", v) for v in PEERING_VERBS}
KOPF_CLUSTER_WIDE = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
    *(("kopf.dev", "clusterkopfpeerings", v) for v in PEERING_VERBS),
}
Permission = tuple[str, str, str]


def granted() -> set[Permission]:
    return {
        (group, resource, verb)
        for rule in (*NAMESPACED_RULES, *CLUSTER_RULES)
        for group in rule.api_groups
        for resource in rule.resources
        for verb in rule.verbs
    }


def pipeline_spec() -> dict[str, Any]:
    return {
        "pulsar": {"namespace": "content", "authSecretRef": {"name": "jwt"}},
        "deletionPolicy": "Delete",
        "stages": [
            {
                "name": "embed",
                "type": "text-embedding",
                "input": {"topic": "items"},
                "outputs": ["embedded"],
                "model": {"backend": "gpu", "name": "m"},
                "scaling": {"minReplicas": 0, "maxReplicas": 3},
            },
            {
                "name": "relay",
                "type": "passthrough",
                "input": {"topic": "embedded"},
                "scaling": {"minReplicas": 0, "maxReplicas": 2, "engine": "KEDA"},
            },
        ],
    }


def reconciler_calls() -> list[tuple[str, str, str]]:
    """Every Kubernetes call of a full life cycle: managed backend, pipeline with auth, an
    autoscaled stage and a KEDA one, an autoscaler tick, a removed stage, the Deployment-event
    handler, deletion of both."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "jwt", "namespace": "ns"},
        "data": {"token": base64.b64encode(b"t").decode()},
    }
    kube = FakeKube([secret])
    fake_pulsar = FakePulsar()
    deps = Deps(kube, lambda url, token, ca=None: fake_pulsar.admin(url), WorkerDefaults("w:1"))
    backend_owner = backend.owner_of("gpu", "ns", "uid-b")
    managed = {"managed": {"modelRepository": {"uri": "s3://m"}}}
    kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "InferenceBackend",
            "metadata": {"name": "gpu", "namespace": "ns", "uid": "uid-b"},
            "spec": managed,
        }
    )
    backend.reconcile_backend(deps, backend_owner, managed, 1, None)
    owner = pipeline.owner_of("cu", "ns", "uid-p")
    kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "Pipeline",
            "metadata": {"name": "cu", "namespace": "ns", "uid": "uid-p", "generation": 1},
            "spec": pipeline_spec(),
        }
    )
    kube.calls.clear()  # the objects above stand for what users create
    pipeline.reconcile_pipeline(deps, owner, pipeline_spec(), 1, None)
    autoscale.autoscale_pipeline(deps, owner, pipeline_spec(), None, {})
    smaller = pipeline_spec()
    smaller["stages"].pop()
    pipeline.reconcile_pipeline(deps, owner, smaller, 2, None)
    kube.objects[ObjectRef(API_VERSION, "Pipeline", "ns", "cu")]["spec"] = smaller
    worker_changed(deps, kube)
    pipeline.delete_pipeline(deps, owner, smaller, None, {})
    backend.delete_backend(deps, backend_owner)
    return kube.calls


def worker_changed(deps: Deps, kube: FakeKube) -> None:
    registry = kopf.OperatorRegistry()
    with ThreadPoolExecutor(1) as pool:
        handlers.register(registry, deps, OperatorConfig(), executor=pool)
        (handler,) = [
            h
            for h in registry._watching.get_all_handlers()
            if h.selector is not None and resource(h.selector) == "deployments"
        ]
        deployment = kube.objects[ObjectRef("apps/v1", "Deployment", "ns", "cu-embed")]
        asyncio.run(
            handler.fn(
                event={"type": "MODIFIED", "object": deployment}, meta=deployment["metadata"]
            )
        )  # the reconcile it asks for runs on the pool, done when it shuts down


def resource(selector: Any) -> str:
    return str(selector.plural or selector.any_name)


def kopf_needs() -> set[Permission]:
    registry = kopf.OperatorRegistry()
    handlers.register(
        registry, Deps(FakeKube(), FakePulsar().admin, WorkerDefaults("w")), OperatorConfig()
    )
    needs = set(KOPF_ALWAYS | KOPF_CLUSTER_WIDE)
    for handler in [*registry._watching.get_all_handlers(), *registry._indexing.get_all_handlers()]:
        selector = handler.selector
        assert selector is not None
        needs |= {(selector.group or "", resource(selector), v) for v in ("list", "watch")}
    for handler in [*registry._changing.get_all_handlers(), *registry._spawning.get_all_handlers()]:
        selector = handler.selector
        assert selector is not None
        group, plural = selector.group or "", resource(selector)
        # Watched; patched for finalizers and progress annotations; status written.
        needs |= {(group, plural, v) for v in ("list", "watch", "patch")}
        needs.add((group, f"{plural}/status", "patch"))
    return needs


def code_needs() -> set[Permission]:
    needs = set()
    for method, api_version, kind in reconciler_calls():
        group, plural = PLURALS[(api_version, kind)]
        subresource = {"patch_status": "/status", "scale": "/scale"}.get(method, "")
        resource = f"{plural}{subresource}"
        needs |= {(group, resource, verb) for verb in VERBS[method]}
    return needs


def test_rbac_rules_grant_every_call_when_operator_runs_a_full_life_cycle() -> None:
    missing = (code_needs() | kopf_needs()) - granted()

    assert missing == set()


def test_rbac_rules_grant_nothing_unused_when_compared_with_calls() -> None:
    unused = granted() - (code_needs() | kopf_needs())

    assert unused == set()


def test_cluster_rules_are_only_kopfs_cluster_wide_needs() -> None:
    cluster = {
        (g, r, v)
        for rule in CLUSTER_RULES
        for g in rule.api_groups
        for r in rule.resources
        for v in rule.verbs
    }

    assert cluster == KOPF_CLUSTER_WIDE
