"""Reconcile one Pipeline: validate, Pulsar first, then workloads, then status.

Order matters: the spec is fully validated and rendered before anything is written (an
invalid spec touches nothing, so what already runs keeps running); subscriptions exist
before the Deployments that consume from them; status is computed from what was observed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from streamvane_operator.api.backend import InferenceBackendSpec
from streamvane_operator.api.common import API_VERSION, Manifest
from streamvane_operator.api.pipeline import DeletionPolicy, PipelineSpec, PipelineStatus
from streamvane_operator.api.validation import parse
from streamvane_operator.kube.client import Kube
from streamvane_operator.pulsar.admin import PulsarAdmin
from streamvane_operator.reconcile.common import (
    Deps,
    Events,
    Outcome,
    RetryLater,
    Stop,
    converge_children,
    delete_children,
    observe_children,
    problems,
    retry_delay,
)
from streamvane_operator.reconcile.replicas import hand_over_replicas, with_initial_replicas
from streamvane_operator.reconcile.status import (
    Failure,
    Problem,
    deployment_ready,
    pipeline_status,
    previous_conditions,
    previous_retiring,
    previous_scaling,
    previous_subscriptions,
    stage_of,
    stage_status,
    stale_subscriptions,
)
from streamvane_operator.reconcile.topology import (
    delete_topology,
    ensure_topology,
    retire_subscriptions,
    subscription_stats,
    worker_connections,
)
from streamvane_operator.render.labels import PIPELINE_LABEL, Owner
from streamvane_operator.render.pipeline import render_pipeline
from streamvane_operator.render.topology import Topology, topology

KIND = "Pipeline"


def owner_of(name: str, namespace: str, uid: str) -> Owner:
    return Owner(API_VERSION, KIND, name, namespace, uid)


def reconcile_pipeline(
    deps: Deps,
    owner: Owner,
    raw_spec: Mapping[str, Any],
    generation: int,
    previous_status: Mapping[str, Any] | None,
) -> Outcome[PipelineStatus]:
    events = Events()
    observed: list[Manifest] = []
    topo: Topology | None = None
    desired: dict[str, int] = {}
    lag: dict[str, int | None] = {}
    retiring = previous_retiring(previous_status)
    problem: Problem | None = None
    try:
        with problems():
            observed = observe_children(deps.kube, owner, PIPELINE_LABEL)
            spec = parse(PipelineSpec, raw_spec)
            rendered = render_pipeline(
                owner, spec, inference_backends(deps.kube, owner.namespace), deps.defaults
            )
            topo = rendered.topology
            retiring = stale_subscriptions(previous_status, topo.stage_subscriptions.values())
            desired = {s.name: s.scaling.min_replicas for s in spec.stages}
            admin = pulsar_admin(deps, owner, spec)
            changes = ensure_topology(admin, topo)
            for created in changes.created:
                events.info("PulsarResourceCreated", f"created {created}")
            for note in changes.notes:
                events.warn("TopicMismatch", note)
            objects = with_initial_replicas(spec, rendered.objects, observed)
            hand_over_replicas(deps.kube, spec, observed)
            observed = converge_children(
                deps.kube, owner, PIPELINE_LABEL, objects, observed, events
            )
            hand_over_replicas(deps.kube, spec, observed)
            retiring = _retire(admin, spec.deletion_policy, retiring, events)
            lag = {
                stage: stats.backlog if stats else None
                for stage, stats in subscription_stats(admin, topo).items()
            }
    except Stop as stop:
        problem = stop.problem
        events.warn(problem.failure.value, problem.message)
    return Outcome(
        status=_status(
            deps,
            owner,
            generation,
            previous_status,
            observed,
            topo,
            desired,
            lag,
            problem,
            retiring,
        ),
        events=events,
        problem=problem,
        retry_after_s=retry_delay(deps, problem),
    )


def _status(
    deps: Deps,
    owner: Owner,
    generation: int,
    previous_status: Mapping[str, Any] | None,
    observed: list[Manifest],
    topo: Topology | None,
    desired: Mapping[str, int],
    lag: Mapping[str, int | None],
    problem: Problem | None,
    retiring: Sequence[str],
) -> PipelineStatus:
    deployments = {stage_of(d): d for d in observed if d["kind"] == "Deployment"}
    if topo is not None:
        subscriptions = topo.stage_subscriptions
    else:
        # The spec is unusable: report the workers that still run the last good one.
        known = previous_subscriptions(previous_status)
        subscriptions = {name: known.get(name, "") for name in sorted(deployments)}
    scaling = previous_scaling(previous_status)
    stages = [
        stage_status(
            name,
            deployments.get(name),
            sub,
            lag.get(name),
            desired.get(name, 0),
            scaling.get(name, (None, None)),
        )
        for name, sub in subscriptions.items()
    ]
    ready = {
        name for name, d in deployments.items() if name in subscriptions and deployment_ready(d)
    }
    if problem is not None and problem.failure is Failure.INVALID_SPEC and deployments:
        problem = Problem(
            problem.failure,
            f"{problem.message}. The workers of the last valid spec keep running.",
        )
    return pipeline_status(
        generation=generation,
        stages=stages,
        ready_stages=ready,
        problem=problem,
        previous=previous_conditions(previous_status),
        now=deps.clock(),
        retiring_subscriptions=retiring,
    )


def _retire(
    admin: PulsarAdmin, policy: DeletionPolicy, stale: list[str], events: Events
) -> list[str]:
    """Subscriptions no stage reads any more hold a backlog that only grows. Delete removes
    them once their workers have disconnected (returns those still pending); Retain keeps
    them, as it keeps a deleted pipeline's, and says so once."""
    if not stale:
        return []
    if policy is DeletionPolicy.RETAIN:
        events.warn(
            "SubscriptionsRetained",
            f"deletionPolicy is Retain: kept {', '.join(stale)}, read by no stage any more; "
            "backlogs grow until deleted (pulsar-admin topics unsubscribe)",
        )
        return []
    deleted, pending = retire_subscriptions(admin, stale)
    for subscription in deleted:
        events.info("SubscriptionDeleted", f"deleted {subscription}: no stage reads it any more")
    return pending


def delete_pipeline(deps: Deps, owner: Owner, raw_spec: Mapping[str, Any]) -> Events:
    """Stop the workers (delete children), then remove topics if the policy says Delete.

    Children are deleted explicitly rather than left to the garbage collector, so workers
    stop before any topic disappears. Raises RetryLater while Pulsar must be reached.
    """
    events = Events()
    try:
        with problems():
            delete_children(deps.kube, owner, PIPELINE_LABEL)
            spec = parse(PipelineSpec, raw_spec)
            if spec.deletion_policy is DeletionPolicy.DELETE:
                admin = pulsar_admin(deps, owner, spec)
                topo = topology(owner.name, spec)
                connected = worker_connections(admin, topo)
                if connected:
                    raise RetryLater(
                        f"waiting for workers to stop ({connected} Pulsar connections) "
                        "before deleting topics",
                        deps.retry_workers_s,
                    )
                deleted = delete_topology(admin, topo)
                events.info("TopicsDeleted", "deleted " + ", ".join(deleted or ["nothing"]))
            else:
                events.info(
                    "TopicsRetained", "deletionPolicy is Retain: topics and subscriptions are kept"
                )
    except Stop as stop:
        delay = retry_delay(deps, stop.problem)
        if delay is None:
            # An unparsable spec cannot say to delete topics: keeping data is the safe side.
            events.warn("TopicsRetained", f"topics kept: {stop.problem.message}")
            return events
        raise RetryLater(stop.problem.message, delay) from stop
    return events


def inference_backends(kube: Kube, namespace: str) -> dict[str, InferenceBackendSpec]:
    """Valid InferenceBackends in ``namespace`` by name; invalid ones report on themselves."""
    found = {}
    for obj in kube.list(API_VERSION, "InferenceBackend", namespace):
        try:
            found[obj["metadata"]["name"]] = InferenceBackendSpec.model_validate(obj.get("spec"))
        except ValidationError:
            continue
    return found


def pulsar_admin(deps: Deps, owner: Owner, spec: PipelineSpec) -> PulsarAdmin:
    ref = spec.pulsar.auth_secret_ref
    token = deps.kube.secret_value(owner.namespace, ref.name, ref.key) if ref else None
    return deps.pulsar(spec.pulsar.admin_url, token)
