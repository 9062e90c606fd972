"""Reconcile one InferenceBackend: publish its address; run Triton when it is managed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamvane_operator.api.backend import InferenceBackendSpec, InferenceBackendStatus
from streamvane_operator.api.common import API_VERSION, Manifest
from streamvane_operator.api.validation import (
    InvalidSpecError,
    is_label_value,
    name_problems,
    parse,
)
from streamvane_operator.reconcile.common import (
    Deps,
    Events,
    Outcome,
    RetryLater,
    Stop,
    check_conflicts,
    converge_children,
    delete_children,
    measured,
    observe_children,
    problems,
    retry_delay,
)
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


def owner_of(name: str, namespace: str, uid: str) -> Owner:
    return Owner(API_VERSION, KIND, name, namespace, uid)


def reconcile_backend(
    deps: Deps,
    owner: Owner,
    raw_spec: Mapping[str, Any],
    generation: int,
    previous_status: Mapping[str, Any] | None,
) -> Outcome[InferenceBackendStatus]:
    return measured(
        deps, KIND, lambda: _reconcile(deps, owner, raw_spec, generation, previous_status)
    )


def _reconcile(
    deps: Deps,
    owner: Owner,
    raw_spec: Mapping[str, Any],
    generation: int,
    previous_status: Mapping[str, Any] | None,
) -> Outcome[InferenceBackendStatus]:
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
            bad_names = name_problems(KIND, owner.name, ["-triton"] if managed else [])
            if bad_names:
                raise InvalidSpecError(bad_names)
            observed = observe_children(deps.kube, owner, BACKEND_LABEL)
            check_conflicts(deps.kube, desired, observed, owner.uid)
            observed = converge_children(deps.kube, owner, BACKEND_LABEL, desired, observed, events)
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
    return Outcome(status, events, problem, retry_delay(deps, problem))


def delete_backend(deps: Deps, owner: Owner) -> None:
    try:
        with problems():
            if is_label_value(owner.name):
                delete_children(deps.kube, owner, BACKEND_LABEL)
    except Stop as stop:
        raise RetryLater(stop.problem.message, retry_delay(deps, stop.problem) or 60) from stop
