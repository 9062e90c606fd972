"""Status that tells the truth: conditions from what was observed (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from streamvane_operator.api.common import Condition, ConditionStatus, Manifest
from streamvane_operator.api.pipeline import PipelineStatus, StagePhase, StageStatus
from streamvane_operator.render.labels import STAGE_LABEL

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
SCHEMAS_COMPATIBLE = "SchemasCompatible"
"""Whether Pulsar's schema registry took the message schemas (reconcile/schemas.py)."""
MODEL_SERVING = "ModelServing"
"""Which model version the ranking stages' Triton serves, as announced (reconcile/serving.py,
written by its own timer)."""
OWN_CONDITIONS = (READY, PROGRESSING, DEGRADED, SCHEMAS_COMPATIBLE)
"""What a reconcile decides; other conditions (the autoscaler's ScalingActive, the model
timer's ModelServing) are kept."""


class Failure(StrEnum):
    """Why a reconcile stopped short; values are condition reasons."""

    INVALID_SPEC = "InvalidSpec"
    PULSAR_UNAVAILABLE = "PulsarUnavailable"
    PULSAR_REJECTED = "PulsarRejected"
    KUBE_UNAVAILABLE = "KubernetesUnavailable"
    KUBE_REJECTED = "KubernetesRejected"
    NAME_CONFLICT = "NameConflict"
    """An object the Pipeline would write exists and is someone else's."""
    TOPIC_CONFLICT = "TopicConflict"
    """A stage would publish into a topic another Pipeline owns."""
    SECRET_NOT_FOUND = "SecretNotFound"
    PULSAR_UNAUTHORIZED = "PulsarUnauthorized"
    PULSAR_TLS = "PulsarTLSFailed"
    PREFLIGHT_FAILED = "PreflightFailed"
    """An edit points at a broker or a model that does not answer; nothing was rolled."""
    INCOMPATIBLE_SCHEMA = "IncompatibleSchema"
    """Pulsar's schema registry refused a topic's message schema; nothing was rolled."""
    WORKER_CRASH_LOOP = "WorkerCrashLoop"
    WORKER_START_FAILED = "WorkerStartFailed"

    @property
    def transient(self) -> bool:
        return self in (
            Failure.PULSAR_UNAVAILABLE,
            Failure.KUBE_UNAVAILABLE,
            Failure.PREFLIGHT_FAILED,
        )

    @property
    def rolled_back(self) -> bool:
        """The current spec is not what runs: the workers of an earlier one serve."""
        return self in (
            Failure.INVALID_SPEC,
            Failure.PREFLIGHT_FAILED,
            Failure.INCOMPATIBLE_SCHEMA,
        )


@dataclass(frozen=True)
class Problem:
    failure: Failure
    message: str


def deployment_ready(deployment: Manifest) -> bool:
    """The rollout is complete (as ``kubectl rollout status`` judges it): the current
    template runs every desired replica, all ready, and no old replica is left."""
    replicas = int(deployment.get("spec", {}).get("replicas", 1))
    status = deployment.get("status") or {}
    generation = int(deployment.get("metadata", {}).get("generation", 0))
    updated = int(status.get("updatedReplicas") or 0)
    return (
        int(status.get("observedGeneration") or 0) >= generation
        and updated >= replicas
        and int(status.get("replicas") or 0) <= updated
        and int(status.get("readyReplicas") or 0) >= replicas
    )


START_FAILURES = frozenset(
    {
        "CreateContainerConfigError",
        "CreateContainerError",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "RunContainerError",
    }
)
"""Waiting reasons of a container that kubelet cannot start (config, image, runtime)."""


@dataclass(frozen=True)
class WorkerFailure:
    """A stage's worker that crashes or cannot start, in its own words."""

    stage: str
    pod: str
    failure: Failure
    message: str

    def describe(self) -> str:
        return f"stage {self.stage}: {self.message}"


def worker_failure(stage: str, pods: Sequence[Manifest]) -> WorkerFailure | None:
    """The first pod of ``stage`` whose container keeps crashing or cannot start, as kubelet
    reports it: waiting in CrashLoopBackOff (or terminated, or running again but not ready)
    after a failed run, with the exit code and the termination message the worker left; or
    waiting for a reason kubelet cannot get past (missing Secret, image). None when healthy."""
    for pod in sorted(pods, key=lambda p: str(p["metadata"].get("name", ""))):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        name = str(pod["metadata"].get("name", ""))
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            found = _container_failure(container)
            if found is not None:
                return WorkerFailure(stage, name, found[0], f"worker {name} {found[1]}")
    return None


def _container_failure(container: Mapping[str, Any]) -> tuple[Failure, str] | None:
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in START_FAILURES:
        detail = waiting.get("message") or "no message"
        return Failure.WORKER_START_FAILED, f"cannot start ({waiting['reason']}): {detail}"
    restarts = int(container.get("restartCount") or 0)
    ended = state.get("terminated") or (container.get("lastState") or {}).get("terminated")
    if not ended and waiting.get("reason") == "CrashLoopBackOff":
        return Failure.WORKER_CRASH_LOOP, f"CrashLoopBackOff: {waiting.get('message', '')}"
    if not ended or int(ended.get("exitCode") or 0) == 0 or container.get("ready"):
        return None
    message = str(ended.get("message") or "").strip() or "(no termination message)"
    return (
        Failure.WORKER_CRASH_LOOP,
        f"exited with code {ended['exitCode']} ({restarts} restarts): {message}",
    )


def stage_status(
    name: str,
    deployment: Manifest | None,
    subscription: str,
    backlog: int | None,
    desired_replicas: int = 0,
    failure: WorkerFailure | None = None,
) -> StageStatus:
    """``desired_replicas`` counts when the stage has no Deployment (yet)."""
    if deployment is None:
        return StageStatus(
            name=name,
            phase=StagePhase.PENDING,
            message="no Deployment yet",
            desired_replicas=desired_replicas,
            subscription=subscription,
            backlog=backlog,
        )
    status = deployment.get("status") or {}
    replicas = int(deployment.get("spec", {}).get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    if failure is not None:
        phase, message = StagePhase.FAILING, failure.message
    elif not deployment_ready(deployment):
        phase, message = StagePhase.ROLLING_OUT, f"{ready}/{replicas} workers ready"
    elif replicas == 0:
        phase = StagePhase.SCALED_TO_ZERO
        message = "0 replicas desired: no worker runs; messages wait on the subscription"
    else:
        phase, message = StagePhase.READY, f"{ready}/{replicas} workers ready"
    return StageStatus(
        name=name,
        phase=phase,
        message=message[:2048],
        desired_replicas=replicas,
        ready_replicas=ready,
        updated_replicas=int(status.get("updatedReplicas") or 0),
        subscription=subscription,
        backlog=backlog,
    )


def stage_of(deployment: Manifest) -> str:
    return str((deployment["metadata"].get("labels") or {}).get(STAGE_LABEL, ""))


def pipeline_status(
    *,
    generation: int,
    stages: Sequence[StageStatus],
    ready_stages: set[str],
    problem: Problem | None,
    previous: Sequence[Condition],
    now: datetime,
    retiring_subscriptions: Sequence[str] = (),
    schemas: DesiredCondition | None = None,
) -> PipelineStatus:
    """Ready: every stage serves. Progressing: a change is rolling out or being retried.
    Degraded: the last reconcile failed (the message says why and what to do).
    SchemasCompatible: ``schemas``, or as before when the reconcile did not get to them."""
    total = len(stages)
    all_ready = total > 0 and len(ready_stages) == total
    waiting = [
        f"{s.name} {s.ready_replicas}/{s.desired_replicas} ready"
        for s in stages
        if s.name not in ready_stages
    ]
    if all_ready and (problem is None or not problem.failure.rolled_back):
        idle = [s.name for s in stages if s.phase is StagePhase.SCALED_TO_ZERO]
        ready = desired_condition(
            READY,
            True,
            "AllStagesReady",
            f"{total}/{total} stages ready"
            + (f" ({', '.join(idle)} scaled to zero)" if idle else ""),
        )
    elif problem is not None and (not stages or all_ready):
        ready = desired_condition(READY, False, problem.failure.value, problem.message)
    else:
        ready = desired_condition(
            READY, False, "StagesNotReady", "waiting for " + ", ".join(waiting)
        )

    if problem is None:
        progressing = (
            desired_condition(
                PROGRESSING, False, "RolloutComplete", "all stages run the current spec"
            )
            if all_ready
            else desired_condition(
                PROGRESSING, True, "RollingOut", "waiting for " + ", ".join(waiting)
            )
        )
        degraded = desired_condition(DEGRADED, False, "AsExpected", "")
    else:
        progressing = (
            desired_condition(PROGRESSING, False, problem.failure.value, "fix the spec to continue")
            if problem.failure is Failure.INVALID_SPEC
            else desired_condition(PROGRESSING, True, "Retrying", problem.message)
        )
        degraded = desired_condition(DEGRADED, True, problem.failure.value, problem.message)

    backlogs = [s.backlog for s in stages if s.backlog is not None]
    decided = [ready, progressing, degraded] + ([schemas] if schemas is not None else [])
    unchanged = [] if schemas is not None else [c for c in previous if c.type == SCHEMAS_COMPATIBLE]
    return PipelineStatus(
        observed_generation=generation,
        conditions=merge_conditions(previous, decided, generation, now)
        + unchanged
        + [c for c in previous if c.type not in OWN_CONDITIONS],
        stages=list(stages),
        stages_ready=f"{len(ready_stages)}/{total}",
        backlog=sum(backlogs) if backlogs else None,
        retiring_subscriptions=list(retiring_subscriptions),
    )


def with_current_foreign_conditions(
    status: PipelineStatus, current: Mapping[str, Any] | None
) -> PipelineStatus:
    """``status`` with the conditions the reconcile does not own (ScalingActive) as
    ``current`` (the stored status, read just before writing) has them: their writer may
    have changed them while this reconcile ran, and a merge patch replaces the whole list."""
    own = [c for c in status.conditions if c.type in OWN_CONDITIONS]
    others = [c for c in previous_conditions(current) if c.type not in OWN_CONDITIONS]
    return status.model_copy(update={"conditions": own + others})


@dataclass(frozen=True)
class DesiredCondition:
    type: str
    status: ConditionStatus
    reason: str
    message: str


def desired_condition(type_: str, status: bool, reason: str, message: str) -> DesiredCondition:
    value = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    return DesiredCondition(type_, value, reason, message)


def merge_conditions(
    previous: Sequence[Condition],
    desired: Sequence[DesiredCondition],
    generation: int,
    now: datetime,
) -> list[Condition]:
    """lastTransitionTime moves only when a condition's status changes."""
    before = {c.type: c for c in previous}
    merged = []
    for d in desired:
        old = before.get(d.type)
        since = old.last_transition_time if old is not None and old.status == d.status else now
        merged.append(
            Condition(
                type=d.type,
                status=d.status,
                reason=d.reason,
                message=d.message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    return merged


def previous_conditions(status: Mapping[str, Any] | None) -> list[Condition]:
    """Conditions from a stored status; unparsable entries are dropped, not fatal."""
    conditions = []
    for raw in (status or {}).get("conditions") or []:
        try:
            conditions.append(Condition.model_validate(raw))
        except ValidationError:
            continue
    return conditions


def previous_condition(status: Mapping[str, Any] | None, type_: str) -> Condition | None:
    return next((c for c in previous_conditions(status) if c.type == type_), None)


def replaced_condition(
    status: Mapping[str, Any], desired: DesiredCondition | None, type_: str, now: datetime
) -> list[dict[str, Any]] | None:
    """The stored conditions with the one of ``type_`` as ``desired`` says it (removed when
    None), for a writer that owns only that condition; None when the stored one already says
    it, so that nothing is written at rest. lastTransitionTime moves only with its status."""
    previous = previous_conditions(status)
    others = [c for c in previous if c.type != type_]
    stored = [c for c in previous if c.type == type_]
    if desired is None:
        if not stored:
            return None
        merged = []
    else:
        generation = int(status.get("observedGeneration") or 0)
        merged = merge_conditions(previous, [desired], generation, now)
        if stored and _same(stored[0], merged[0]):
            return None
    return [c.model_dump(by_alias=True, mode="json", exclude_none=True) for c in others + merged]


def _same(a: Condition, b: Condition) -> bool:
    return (a.status, a.reason, a.message) == (b.status, b.reason, b.message)


def previous_subscriptions(status: Mapping[str, Any] | None) -> dict[str, str]:
    """Stage -> subscription, as a stored status recorded them."""
    return {
        str(stage["name"]): str(stage.get("subscription") or "")
        for stage in (status or {}).get("stages") or []
        if isinstance(stage, dict) and "name" in stage
    }


def previous_retiring(status: Mapping[str, Any] | None) -> list[str]:
    """Subscriptions a stored status still had to delete."""
    return [str(s) for s in (status or {}).get("retiringSubscriptions") or []]


def stale_subscriptions(status: Mapping[str, Any] | None, desired: Iterable[str]) -> list[str]:
    """Subscriptions a stored status recorded (stage inputs, those it created, such as a
    stage's side-input subscriptions, and those still retiring) that are not ``desired`` any
    more: a stage was removed or now reads another topic."""
    created = [str(s) for s in (status or {}).get("createdSubscriptions") or []]
    known = {*previous_subscriptions(status).values(), *previous_retiring(status), *created}
    return sorted(known - set(desired) - {""})
