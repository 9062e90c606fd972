"""The Kubernetes permissions the operator needs: the one list the Helm chart's RBAC follows.

``tests/unit/operator/test_rbac_rules.py`` checks it against the calls the reconcilers make
and the resources the kopf handlers watch, in both directions (nothing missing, nothing extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "apiGroups": list(self.api_groups),
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }


NAMESPACED_RULES = (
    # kopf watches and patches (annotations, finalizers); the Deployment-event handler reads
    # the Pipeline that owns a changed worker.
    Rule(("streamvane.io",), ("pipelines",), ("get", "list", "watch", "patch")),
    # kopf watches and patches; the Pipeline reconciler lists them to resolve model.backend.
    Rule(("streamvane.io",), ("inferencebackends",), ("list", "watch", "patch")),
    Rule(("streamvane.io",), ("pipelines/status", "inferencebackends/status"), ("patch",)),
    # Children: observed by label (list), read by name before the first apply (an object of
    # someone else's is never taken over), server-side applied (create+patch), deleted.
    # kopf watches Deployments to react to drift and readiness.
    Rule(("apps",), ("deployments",), ("get", "list", "watch", "create", "patch", "delete")),
    # The autoscaler writes replicas of autoscaled stages through the scale subresource.
    Rule(("apps",), ("deployments/scale",), ("patch",)),
    # engine: KEDA stages: a ScaledObject each, a TriggerAuthentication for the Pulsar token.
    Rule(
        ("keda.sh",),
        ("scaledobjects", "triggerauthentications"),
        ("get", "list", "create", "patch", "delete"),
    ),
    # kopf watches the other children too: one deleted behind the operator's back is
    # restored at once (a resync of an unchanged Pipeline reads no children).
    Rule(("",), ("configmaps", "services"), ("get", "list", "watch", "create", "patch", "delete")),
    Rule(
        ("policy",),
        ("poddisruptionbudgets",),
        ("get", "list", "watch", "create", "patch", "delete"),
    ),
    # Worker pods: their container statuses (crash loops, termination messages) go into the
    # Pipeline's status; kopf watches them to report a crash at once.
    Rule(("",), ("pods",), ("list", "watch")),
    # Pulsar token for admin calls (spec.pulsar.authSecretRef) and the CA of a TLS Triton
    # (the preflight), read by name.
    Rule(("",), ("secrets",), ("get",)),
    # Kubernetes Events on Pipelines and InferenceBackends (kopf posts core/v1 Events).
    Rule(("",), ("events",), ("create",)),
    # Leader election (--peering): kopf watches the KopfPeering and patches its keep-alive in.
    Rule(("kopf.dev",), ("kopfpeerings",), ("list", "watch", "patch")),
)
"""Granted in every watched namespace (a Role each, or part of the ClusterRole)."""

CLUSTER_RULES = (
    # kopf notices CRDs being installed or removed, and namespaces appearing, when it watches
    # the whole cluster.
    Rule(("apiextensions.k8s.io",), ("customresourcedefinitions",), ("list", "watch")),
    Rule(("",), ("namespaces",), ("list", "watch")),
    # Leader election (--peering) when watching all namespaces: one ClusterKopfPeering.
    Rule(("kopf.dev",), ("clusterkopfpeerings",), ("list", "watch", "patch")),
)
"""Granted only when the operator watches all namespaces."""

HUB_RULES = (
    # Hub Pipelines (spec.placement): kopf watches and patches them; the hub writes their status.
    Rule(("streamvane.io",), ("pipelines",), ("get", "list", "watch", "patch")),
    Rule(("streamvane.io",), ("pipelines/status",), ("patch",)),
    # Regions are cluster-scoped: listed for placement, probed on a timer (status patched).
    Rule(("streamvane.io",), ("regions",), ("list", "watch", "patch")),
    Rule(("streamvane.io",), ("regions/status",), ("patch",)),
    # Every rolled-out revision, kept for rollback (server-side applied, pruned to a limit).
    Rule(("apps",), ("controllerrevisions",), ("list", "create", "patch", "delete")),
    # The kubeconfig and Pulsar-token Secrets the Regions name, read by name (any namespace:
    # the Region says which).
    Rule(("",), ("secrets",), ("get",)),
    Rule(("",), ("events",), ("create",)),
    # kopf notices CRDs and namespaces when it watches cluster-wide.
    Rule(("apiextensions.k8s.io",), ("customresourcedefinitions",), ("list", "watch")),
    Rule(("",), ("namespaces",), ("list", "watch")),
)
"""Granted cluster-wide to the hub operator (--mode hub), when the chart deploys one."""
