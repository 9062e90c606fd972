"""The autoscaler's tick for one Pipeline, and the hand-over of replicas to it.

Per tick: one read of the Pulsar stats of the autoscaled stages' input topics (each topic
once; partitioned-stats for partitioned ones) and of the Triton metrics of their backends;
the policy per stage; a write through the Deployment's scale subresource only on change,
with an Event; the stages' scaling status. A signal that cannot be read freezes the
replicas of the stages that need it, and the ScalingActive condition says why.

The autoscaler writes status.autoscaling, which no one else writes, and the ScalingActive
condition only with the resourceVersion it read: the reconcile replaces status.stages and
the conditions from its own reading, so sharing those fields would drop one writer's news.

"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from streamvane_operator.api.pipeline import PipelineSpec, StageAutoscaling, StageSpec
from streamvane_operator.api.validation import InvalidSpecError, parse
from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.kube.errors import KubeError
from streamvane_operator.pulsar.admin import TopicName
from streamvane_operator.pulsar.errors import PulsarError
from streamvane_operator.reconcile.common import Deps, Events, write_conditions
from streamvane_operator.reconcile.pipeline import inference_backends, pulsar_admin
from streamvane_operator.reconcile.plan import owned_by
from streamvane_operator.reconcile.replicas import builtin_autoscaled
from streamvane_operator.reconcile.status import (
    DesiredCondition,
    desired_condition,
    previous_conditions,
    replaced_condition,
    stage_of,
)
from streamvane_operator.render.backend import resolve
from streamvane_operator.render.labels import AUTOSCALER_FIELD_MANAGER, PIPELINE_LABEL, Owner
from streamvane_operator.render.topology import Topology, topology
from streamvane_operator.scaling.errors import MetricsUnavailable
from streamvane_operator.scaling.loop import StageMemory, StageTick, objective_of, tick
from streamvane_operator.scaling.policy import Reason
from streamvane_operator.scaling.signals import ModelCounters, subscription_reading

SCALING_ACTIVE = "ScalingActive"


@dataclass(frozen=True)
class StageScaling:
    desired_replicas: int
    reason: str
    last_scale_time: datetime | None


@dataclass(frozen=True)
class AutoscaleOutcome:
    skipped: bool = False
    """Nothing could be read this tick (invalid spec, Kubernetes unavailable): status stays."""
    stages: dict[str, StageScaling] = field(default_factory=dict)
    condition: DesiredCondition | None = None
    """ScalingActive; None when the Pipeline has no stage the operator scales."""
    events: Events = field(default_factory=Events)
    memory: dict[str, StageMemory] = field(default_factory=dict)


def needs_ticks(raw_spec: Mapping[str, Any], status: Mapping[str, Any] | None) -> bool:
    """Whether a Pipeline needs the autoscaler's timer: a stage it scales, or scaling status
    still to clear. Without one the timer would wake every few seconds for nothing (at 500
    Pipelines, 100 wake-ups a second)."""
    status = status or {}
    conditions = status.get("conditions") or []
    if status.get("autoscaling") or any(c.get("type") == SCALING_ACTIVE for c in conditions):
        return True
    try:
        return bool(builtin_autoscaled(parse(PipelineSpec, raw_spec)))
    except InvalidSpecError:
        return False  # the reconcile reports it


def autoscale_pipeline(
    deps: Deps,
    owner: Owner,
    raw_spec: Mapping[str, Any],
    previous_status: Mapping[str, Any] | None,
    memory: Mapping[str, StageMemory],
) -> AutoscaleOutcome:
    try:
        spec = parse(PipelineSpec, raw_spec)
    except InvalidSpecError:
        return AutoscaleOutcome(skipped=True, memory=dict(memory))  # the reconcile reports it
    stages = builtin_autoscaled(spec)
    if not stages:
        return AutoscaleOutcome()
    try:
        deployments = {
            stage_of(d): d
            for d in deps.kube.list(
                "apps/v1",
                "Deployment",
                owner.namespace,
                f"{PIPELINE_LABEL}={owner.name}",
                cached=True,
            )
            if owned_by(d, owner.uid)
        }
    except KubeError:
        return AutoscaleOutcome(skipped=True, memory=dict(memory))  # nothing can be scaled now
    now, stamp = deps.monotonic(), deps.clock()
    topo = topology(owner.namespace, owner.name, spec)
    subscriptions = {s.stage: s for s in topo.subscriptions}
    stats, pulsar_missing = _pulsar_stats(
        deps, owner, spec, topo, {subscriptions[s.name].topic for s in stages}
    )
    models, model_missing = _model_counters(deps, owner.namespace, stages)
    before = _previous_scale_times(previous_status)
    events = Events()
    out: dict[str, StageScaling] = {}
    new_memory: dict[str, StageMemory] = {}
    frozen: list[str] = []
    for stage in stages:
        deployment = deployments.get(stage.name)
        if deployment is None:
            continue
        sub = subscriptions[stage.name]
        reading = (
            subscription_reading(stats[sub.topic], sub.name, now) if sub.topic in stats else None
        )
        missing = pulsar_missing or model_missing.get(stage.name)
        if missing is None and reading is None:
            missing = f"no stats for subscription {sub.name} of {topo.topic(sub.topic)}"
        replicas = int(deployment["spec"].get("replicas", 1))
        ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        decision, new_memory[stage.name] = tick(
            StageTick(
                objective_of(stage.scaling),
                replicas,
                ready,
                reading,
                models.get(stage.name),
                missing,
            ),
            memory.get(stage.name, StageMemory()),
        )
        last = before.get(stage.name)
        if decision.reason is Reason.SIGNALS_MISSING:
            frozen.append(f"{stage.name}: {decision.message}")
        if decision.replicas != replicas:
            try:
                deps.kube.scale(
                    ObjectRef.of(deployment), decision.replicas, AUTOSCALER_FIELD_MANAGER
                )
            except KubeError as e:
                events.warn("ScaleFailed", f"stage {stage.name}: {e}")
                new_memory[stage.name] = memory.get(stage.name, StageMemory())
                continue
            events.info(
                decision.reason.value,
                f"stage {stage.name}: {replicas} -> {decision.replicas} replicas; "
                f"{decision.message}",
            )
            last = stamp
        out[stage.name] = StageScaling(decision.replicas, decision.summary, last)
    condition = _condition(stages, frozen)
    was_active = _was_active(previous_status)
    if frozen and was_active:
        events.warn("ScalingFrozen", "; ".join(frozen))
    elif not frozen and not was_active:
        events.info("ScalingResumed", "signals read again")
    return AutoscaleOutcome(False, out, condition, events, new_memory)


def _condition(stages: Sequence[StageSpec], frozen: Sequence[str]) -> DesiredCondition:
    if frozen:
        return desired_condition(SCALING_ACTIVE, False, "SignalsMissing", "; ".join(frozen))
    names = ", ".join(s.name for s in stages)
    return desired_condition(SCALING_ACTIVE, True, "SignalsRead", f"autoscaling {names}")


def _was_active(status: Mapping[str, Any] | None) -> bool:
    """ScalingActive was not False before (a freeze is announced once, not every tick)."""
    for c in previous_conditions(status):
        if c.type == SCALING_ACTIVE:
            return c.status.value != "False"
    return True


def _pulsar_stats(
    deps: Deps, owner: Owner, spec: PipelineSpec, topo: Topology, topics: Iterable[str]
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Local topic -> its stats, read once each; or why they cannot be read."""
    try:
        admin = pulsar_admin(deps, owner, spec)
        existing = admin.topics(topo.tenant, topo.namespace)
        return {
            local: admin.stats(TopicName(topo.tenant, topo.namespace, local), existing[local] > 0)
            for local in sorted(topics)
            if local in existing
        }, None
    except PulsarError as e:
        return {}, f"Pulsar stats unavailable: {e}"
    except KubeError as e:
        return {}, f"Pulsar credentials unavailable: {e}"


def _model_counters(
    deps: Deps, namespace: str, stages: Sequence[StageSpec]
) -> tuple[dict[str, ModelCounters], dict[str, str]]:
    """Stage -> its model's Triton counters (stages with a model on a backend that has a
    metrics URL), each endpoint read once; and stage -> why they cannot be read."""
    inferring = [s for s in stages if s.model is not None]
    if not inferring:
        return {}, {}
    try:
        backends = inference_backends(deps.kube, namespace)
    except KubeError as e:
        return {}, {s.name: f"InferenceBackends unavailable: {e}" for s in inferring}
    urls = {}
    for stage in inferring:
        assert stage.model is not None
        backend = backends.get(stage.model.backend)
        url = resolve(stage.model.backend, namespace, backend).metrics_url if backend else None
        if url is not None:
            urls[stage.name] = (url, stage.model.name)
    read: dict[str, dict[str, ModelCounters] | str] = {}
    for url in sorted({u for u, _ in urls.values()}):
        try:
            read[url] = deps.triton_metrics(url)
        except MetricsUnavailable as e:
            read[url] = f"backend metrics unavailable: {e}"
    counters: dict[str, ModelCounters] = {}
    missing: dict[str, str] = {}
    for name, (url, model) in urls.items():
        got = read[url]
        if isinstance(got, str):
            missing[name] = got
        elif model in got:
            counters[name] = got[model]
    return counters, missing


def _previous_scale_times(status: Mapping[str, Any] | None) -> dict[str, datetime | None]:
    found: dict[str, datetime | None] = {}
    for raw in (status or {}).get("autoscaling") or []:
        try:
            stage = StageAutoscaling.model_validate(raw)
        except ValidationError:
            continue
        found[stage.name] = stage.last_scale_time
    return found


def autoscaling_status(
    status: Mapping[str, Any], outcome: AutoscaleOutcome
) -> list[dict[str, Any]] | None:
    """The new status.autoscaling, or None when it stays as stored (nothing changed, or
    nothing was read this tick)."""
    if outcome.skipped:
        return None
    new = [
        StageAutoscaling(
            name=name,
            desired_replicas=scaled.desired_replicas,
            scaling_reason=scaled.reason[:1024],
            last_scale_time=scaled.last_scale_time,
        ).model_dump(by_alias=True, mode="json", exclude_none=True)
        for name, scaled in sorted(outcome.stages.items())
    ]
    return None if new == list(status.get("autoscaling") or []) else new


def conditions_status(
    status: Mapping[str, Any], outcome: AutoscaleOutcome, now: datetime
) -> list[dict[str, Any]] | None:
    """The conditions with ScalingActive as this tick found it (removed when no stage is
    autoscaled by the operator), or None when the stored one already says so."""
    if outcome.skipped:
        return None
    return replaced_condition(status, outcome.condition, SCALING_ACTIVE, now)


def write_condition(
    deps: Deps,
    owner: Owner,
    status: Mapping[str, Any],
    resource_version: str,
    outcome: AutoscaleOutcome,
) -> str | None:
    """Write the conditions with this tick's ScalingActive if it changed, only over the
    status that was read; returns why not (``write_conditions``)."""
    conditions = conditions_status(status, outcome, deps.clock())
    refused = write_conditions(deps.kube, owner, conditions, resource_version)
    return None if refused is None else str(refused)
