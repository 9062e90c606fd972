"""Reconcile one InferenceBackend: publish its address; run Triton when it is managed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streamvane_operator.api.backend import InferenceBackendSpec, InferenceBackendStatus
from streamvane_operator.api.common import API_VERSION, Manifest
from streamvane_operator.api.validation import parse
from streamvane_operator.reconcile.common import (
    Deps,
    Events,
    RetryLater,
    Stop,
    observe_children,
    problems,
    retry_delay,
)
from streamvane_operator.reconcile.plan import plan
from streamvane_operator.reconcile.status import (
    DEGRADED,
    READY,
    Problem,
    deployment_ready,
    desired_condition,
    merge_conditions,
    previous_conditions,
)
from streamvane_operator.render.backend import render_managed, resolve
from streamvane_operator.render.labels import BACKEND_LABEL, Owner

KIND = "InferenceBackend"


@dataclass(frozen=True)
class BackendOutcome:
    status: InferenceBackendStatus
    events: Events
    problem: Problem | None
    retry_after_s: float | None


def owner_of(name: str, namespace: str, uid: str) -> Owner:
    return Owner(API_VERSION, KIND, name, namespace, uid)


def selector(owner: Owner) -> str:
    return f"{BACKEND_LABEL}={owner.name}"


def reconcile_backend(
    deps: Deps,
    owner: Owner,
    raw_spec: Mapping[str, Any],
    generation: int,
    previous_status: Mapping[str, Any] | None,
) -> BackendOutcome:
    events = Events()
    problem: Problem | None = None
    url = ""
    observed: list[Manifest] = []
    managed = False
    try:
        with problems():
            spec = parse(InferenceBackendSpec, raw_spec)
            url = resolve(owner.name, owner.namespace, spec).url
            managed = spec.managed is not None
            desired = render_managed(owner, spec.managed) if spec.managed is not None else []
            observed = observe_children(deps.kube, owner, selector(owner))
            todo = plan(desired, observed, owner.uid)
            for obj in todo.apply:
                deps.kube.apply(obj)
            for ref in todo.delete:
                deps.kube.delete(ref)
            if not todo.empty:
                events.info("Reconciled", f"applied {len(todo.apply)}, deleted {len(todo.delete)}")
                observed = observe_children(deps.kube, owner, selector(owner))
    except Stop as stop:
        problem = stop.problem
        events.warn(problem.failure.value, problem.message)

    deployments = [o for o in observed if o["kind"] == "Deployment"]
    if problem is not None:
        ready = desired_condition(READY, False, problem.failure.value, problem.message)
        degraded = desired_condition(DEGRADED, True, problem.failure.value, problem.message)
    elif not managed:
        ready = desired_condition(
            READY, True, "External", f"stages call {url}; the operator does not probe it"
        )
        degraded = desired_condition(DEGRADED, False, "AsExpected", "")
    else:
        serving = bool(deployments) and all(deployment_ready(d) for d in deployments)
        ready = (
            desired_condition(READY, True, "TritonReady", f"Triton serves on {url}")
            if serving
            else desired_condition(
                READY, False, "TritonStarting", "waiting for the Triton Deployment"
            )
        )
        degraded = desired_condition(DEGRADED, False, "AsExpected", "")
    status = InferenceBackendStatus(
        observed_generation=generation,
        url=url,
        conditions=merge_conditions(
            previous_conditions(previous_status), [ready, degraded], generation, deps.clock()
        ),
    )
    return BackendOutcome(status, events, problem, retry_delay(deps, problem))


def delete_backend(deps: Deps, owner: Owner) -> None:
    """Children are deleted explicitly so nothing depends on a garbage collector."""
    try:
        with problems():
            observed = observe_children(deps.kube, owner, selector(owner))
            for ref in plan([], observed, owner.uid).delete:
                deps.kube.delete(ref)
    except Stop as stop:
        raise RetryLater(stop.problem.message, retry_delay(deps, stop.problem) or 60) from stop
