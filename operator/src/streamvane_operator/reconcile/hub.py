"""The hub: place a Pipeline in its Regions, wave by wave, behind health gates.

Each reconcile observes every placed region (its member Pipeline and the Pulsar stats that
feed the gates), asks ``rollout.decide`` what to do, writes the member Pipelines it says to
write, and reports. The hub never deletes a data topic: removing a region's member Pipeline
only happens when the hub Pipeline is deleted, and then the member's own deletionPolicy
decides about its topics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from streamvane_operator.api.common import API_VERSION, ConditionStatus, Manifest
from streamvane_operator.api.pipeline import DeletionPolicy, PipelineSpec, PipelineStatus
from streamvane_operator.api.region import (
    Counters,
    RegionPhase,
    RegionPulsar,
    RegionRolloutStatus,
    RegionSpec,
    RegionStatus,
    RolloutPhase,
    RolloutSpec,
    RolloutStatus,
)
from streamvane_operator.api.validation import InvalidSpecError, parse
from streamvane_operator.kube.client import Kube, ObjectRef
from streamvane_operator.kube.errors import KubeError
from streamvane_operator.pulsar.admin import PulsarAdmin, TopicName
from streamvane_operator.pulsar.errors import PulsarError
from streamvane_operator.reconcile.common import (
    Events,
    Outcome,
    PulsarFactory,
    RetryLater,
    Stop,
    problems,
    utcnow,
)
from streamvane_operator.reconcile.status import (
    DEGRADED,
    PROGRESSING,
    READY,
    Problem,
    desired_condition,
    merge_conditions,
    previous_conditions,
)
from streamvane_operator.render.labels import Owner
from streamvane_operator.rollout import gates as gate_signals
from streamvane_operator.rollout.decide import (
    Decision,
    Observation,
    Policy,
    State,
    decide,
    default_waves,
)
from streamvane_operator.rollout.member import (
    HISTORY_LIMIT,
    HUB_PIPELINE_LABEL,
    REVISION_LABEL,
    controller_revision,
    member_pipeline,
    member_spec,
    prune,
    revision_of,
)

REGION_KIND = "Region"
PIPELINE_KIND = "Pipeline"
PIPELINE_CRD = ObjectRef(
    "apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "pipelines.streamvane.io"
)
VERSION_LABEL = "app.kubernetes.io/version"

MemberFactory = Callable[[str], Kube]
"""kubeconfig text -> a client of that cluster."""


@dataclass(frozen=True)
class HubDeps:
    kube: Kube
    """The hub cluster (Pipelines, Regions, kubeconfig Secrets, revision history)."""
    members: MemberFactory
    pulsar: PulsarFactory
    clock: Callable[[], datetime] = utcnow
    history_limit: int = HISTORY_LIMIT
    retry_s: float = 5.0
    """Next reconcile while a rollout is under way (waits, bakes and deadlines are polled)."""


@dataclass(frozen=True)
class Region:
    name: str
    spec: RegionSpec


@dataclass
class Seen:
    observations: dict[str, Observation] = field(default_factory=dict)
    baselines: dict[str, Counters] = field(default_factory=dict)


def reconcile_hub(
    deps: HubDeps,
    owner: Owner,
    raw_spec: Mapping[str, Any],
    generation: int,
    previous_status: Mapping[str, Any] | None,
) -> Outcome[PipelineStatus]:
    events = Events()
    now = deps.clock()
    previous = _previous(previous_status)
    decision: Decision | None = None
    waves = 0
    seen = Seen()
    replicated = list((previous_status or {}).get("replicationClusters") or [])
    problem: Problem | None = None
    try:
        with problems():
            spec = parse(PipelineSpec, raw_spec)
            regions = _placed(deps.kube, spec)
            policy = _policy(spec, regions)
            waves = len(policy.waves)
            member = member_spec(spec)
            revision = revision_of(member)
            history = _record(deps.kube, deps.history_limit, owner, revision, member, previous)
            replicated = _replicate(deps, owner, spec, regions, replicated, events)
            seen = _observe(deps, owner, spec, regions, previous_status, now)
            decision = decide(revision, policy, _state(previous), seen.observations, now)
            _write(deps, owner, decision, regions, history, events)
            _announce(previous, decision.state, events)
    except Stop as e:
        problem = e.problem
    status = _status(previous_status, decision, waves, seen, replicated, problem, generation, now)
    terminal = decision is not None and decision.state.phase in (
        RolloutPhase.ROLLED_BACK,
        RolloutPhase.FAILED,
    )
    retry = None if problem is None and (decision is None or terminal) else deps.retry_s
    return Outcome(status, events, problem, retry)


def delete_hub_pipeline(deps: HubDeps, owner: Owner, raw_spec: Mapping[str, Any]) -> Events:
    """Delete the member Pipelines (each member's deletionPolicy decides about its topics)."""
    events = Events()
    try:
        spec = parse(PipelineSpec, raw_spec)
        regions = _placed(deps.kube, spec)
    except (InvalidSpecError, KubeError) as e:
        events.warn("MembersLeft", f"member Pipelines not deleted: {e}")
        return events
    for region in regions:
        try:
            kube = _member(deps, region)
            kube.delete(ObjectRef(API_VERSION, PIPELINE_KIND, owner.namespace, owner.name))
        except KubeError as e:
            raise RetryLater(f"cannot delete the member Pipeline in {region.name}: {e}", 5) from e
    events.info("MembersDeleted", f"deleted in {', '.join(r.name for r in regions)}")
    return events


def probe_region(deps: HubDeps, spec_raw: Mapping[str, Any]) -> RegionStatus:
    """Reachability of a Region's cluster and the Streamvane version installed there."""
    now = deps.clock()
    try:
        region = Region("", parse(RegionSpec, spec_raw))
        crd = _member(deps, region).get(PIPELINE_CRD)
    except (InvalidSpecError, KubeError) as e:
        return RegionStatus(reachable=False, last_probe_time=now, message=str(e))
    if crd is None:
        return RegionStatus(
            reachable=True, last_probe_time=now, message="Streamvane CRDs are not installed"
        )
    version = (crd["metadata"].get("labels") or {}).get(VERSION_LABEL, "")
    return RegionStatus(reachable=True, operator_version=version, last_probe_time=now)


# steps


def _placed(kube: Kube, spec: PipelineSpec) -> list[Region]:
    placement = spec.placement
    assert placement is not None  # the hub only handles placed Pipelines
    everything = {r["metadata"]["name"]: r for r in kube.list(API_VERSION, REGION_KIND, "")}
    if placement.regions is not None:
        missing = [n for n in placement.regions if n not in everything]
        if missing:
            raise InvalidSpecError([f"spec.placement.regions: no Region {n!r}" for n in missing])
        names = list(placement.regions)
    else:
        assert placement.region_selector is not None
        wanted = placement.region_selector.match_labels.items()
        names = sorted(
            n
            for n, r in everything.items()
            if wanted <= (r["metadata"].get("labels") or {}).items()
        )
        if not names:
            raise InvalidSpecError(["spec.placement.regionSelector: selects no Region"])
    regions = []
    for name in names:
        try:
            regions.append(Region(name, RegionSpec.model_validate(everything[name]["spec"])))
        except ValidationError as e:
            raise InvalidSpecError([f"Region {name}: {e}"]) from e
    return regions


def _policy(spec: PipelineSpec, regions: Sequence[Region]) -> Policy:
    names = tuple(r.name for r in regions)
    rollout = spec.rollout or RolloutSpec()
    waves = tuple(tuple(w) for w in rollout.waves) if rollout.waves else default_waves(names)
    if sorted(r for w in waves for r in w) != sorted(names):
        raise InvalidSpecError(
            ["spec.rollout.waves must name every placed region exactly once: " + ", ".join(names)]
        )
    return Policy(
        waves, rollout.bake_seconds, rollout.progress_deadline_seconds, rollout.gates,
        rollout.on_failure,
    )  # fmt: skip


def _record(
    kube: Kube,
    limit: int,
    owner: Owner,
    revision: str,
    member: dict[str, Any],
    previous: RolloutStatus | None,
) -> dict[str, dict[str, Any]]:
    """Store ``revision`` (once) and prune the history; revision -> member spec."""
    selector = f"{HUB_PIPELINE_LABEL}={owner.name}"
    stored = kube.list("apps/v1", "ControllerRevision", owner.namespace, selector)
    by_revision = {_revision_label(r): r for r in stored}
    if revision not in by_revision:
        number = 1 + max((int(r.get("revision") or 0) for r in stored), default=0)
        obj = controller_revision(
            owner.name, owner.namespace, owner.reference(), revision, number, member
        )
        by_revision[revision] = kube.apply(obj)
        stored = [*stored, by_revision[revision]]
    keep = [
        revision,
        previous.last_good_revision if previous else "",
        previous.revision if previous else "",
    ]
    for name in prune(stored, keep, limit):
        kube.delete(ObjectRef("apps/v1", "ControllerRevision", owner.namespace, name))
    return {
        rev: dict((obj.get("data") or {}).get("spec") or {}) for rev, obj in by_revision.items()
    }


def _replicate(
    deps: HubDeps,
    owner: Owner,
    spec: PipelineSpec,
    regions: Sequence[Region],
    applied: list[str],
    events: Events,
) -> list[str]:
    """Geo-replicate the namespace between ``spec.pulsar.replication.clusters`` on every Pulsar
    involved (each cluster registered at every other: no shared configuration store)."""
    wanted = sorted(spec.pulsar.replication.clusters) if spec.pulsar.replication else []
    if not wanted and not applied:
        return applied
    by_cluster = {r.spec.pulsar.cluster: r.spec.pulsar for r in regions}
    unknown = [c for c in wanted if c not in by_cluster]
    if unknown:
        raise InvalidSpecError(
            [
                f"spec.pulsar.replication.clusters: {c!r} is no placed Region's pulsar.cluster"
                for c in unknown
            ]
        )
    removed = sorted(set(applied) - set(wanted))
    if removed and spec.deletion_policy is not DeletionPolicy.DELETE:
        raise InvalidSpecError(
            [
                f"spec.pulsar.replication.clusters: removing {', '.join(removed)} makes Pulsar "
                "delete the namespace's topics there; set deletionPolicy: Delete to allow it"
            ]
        )
    tenant, namespace = spec.pulsar.tenant, spec.pulsar.namespace
    involved = sorted(set(wanted) | set(removed))
    for cluster in involved:
        pulsar = by_cluster.get(cluster)
        if pulsar is None:
            continue
        admin = _region_admin(deps, pulsar)
        for peer in wanted:
            if (
                peer != cluster
                and (admin.cluster(peer) or {}).get("brokerServiceUrl")
                != by_cluster[peer].service_url
            ):
                admin.register_cluster(
                    peer, by_cluster[peer].admin_url, by_cluster[peer].service_url
                )
        allowed = admin.tenant_clusters(tenant)
        if allowed is None:
            admin.create_tenant(tenant, sorted({*wanted, cluster}))
        elif not set(wanted) <= set(allowed):
            admin.set_tenant_clusters(tenant, sorted({*allowed, *wanted}))
        if f"{tenant}/{namespace}" not in admin.namespaces(tenant):
            admin.create_namespace(tenant, namespace)
        if cluster in wanted and sorted(admin.replication_clusters(tenant, namespace)) != wanted:
            admin.set_replication_clusters(tenant, namespace, wanted)
    if wanted != sorted(applied):
        events.info(
            "Replication", f"{tenant}/{namespace} replicated between {', '.join(wanted) or 'none'}"
        )
    return wanted


def _region_admin(deps: HubDeps, pulsar: RegionPulsar) -> PulsarAdmin:
    """The admin client of a region's Pulsar, with the token its authSecretRef names (read
    from the hub cluster at each use, so a rotated token is picked up)."""
    ref = pulsar.auth_secret_ref
    token = deps.kube.secret_value(ref.namespace, ref.name, ref.key) if ref else None
    return deps.pulsar(pulsar.admin_url, token)


def _observe(
    deps: HubDeps,
    owner: Owner,
    spec: PipelineSpec,
    regions: Sequence[Region],
    previous_status: Mapping[str, Any] | None,
    now: datetime,
) -> Seen:
    seen = Seen()
    before = {
        r.get("name"): r
        for r in (previous_status or {}).get("regions") or []
        if isinstance(r, dict)
    }
    watch = gate_signals.watched(owner.namespace, owner.name, spec)
    for region in regions:
        observation, counters = _observe_region(deps, owner, spec, region, watch, now)
        old = before.get(region.name) or {}
        baseline = _baseline(old, observation.revision, counters)
        if baseline is not None:
            seen.baselines[region.name] = baseline
        if counters is not None and baseline is not None:
            lag = gate_signals.lag_seconds(watch, counters[1], int(now.timestamp() * 1000))
            values = gate_signals.gate_values(baseline, counters[0], lag)
            observation = Observation(
                observation.reachable, observation.revision, observation.ready, values,
                observation.message,
            )  # fmt: skip
        seen.observations[region.name] = observation
    return seen


def _observe_region(
    deps: HubDeps,
    owner: Owner,
    spec: PipelineSpec,
    region: Region,
    watch: gate_signals.Watched,
    now: datetime,
) -> tuple[Observation, tuple[Counters, dict[str, Any]] | None]:
    try:
        kube = _member(deps, region)
        member = kube.get(ObjectRef(API_VERSION, PIPELINE_KIND, owner.namespace, owner.name))
    except KubeError as e:
        return Observation(reachable=False, message=str(e)), None
    if member is None:
        return Observation(reachable=True, message="no member Pipeline yet"), None
    labels = member["metadata"].get("labels") or {}
    revision = labels.get(REVISION_LABEL, "")
    status = member.get("status") or {}
    current = status.get("observedGeneration") == member["metadata"].get("generation")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready_condition = conditions.get(READY) or {}
    ready = current and ready_condition.get("status") == ConditionStatus.TRUE
    message = "" if ready else str(ready_condition.get("message") or "member not reconciled yet")
    stats: dict[str, Any] = {}
    try:
        admin = _region_admin(deps, region.spec.pulsar)
        for topic in watch.topics:
            name = TopicName(spec.pulsar.tenant, spec.pulsar.namespace, topic)
            # Dead-letter topics are never partitioned (the client creates them).
            partitioned = spec.topics.partitions > 0 and topic not in watch.dead_letters
            stats[topic] = admin.topic_stats(name, partitioned)
    except (PulsarError, KubeError) as e:
        return Observation(True, revision, ready, None, f"{message} (no gate signals: {e})"), None
    return Observation(True, revision, ready, None, message), (
        gate_signals.counters(watch, stats),
        stats,
    )


def _baseline(
    old: Mapping[str, Any], revision: str, counters: tuple[Counters, dict[str, Any]] | None
) -> Counters | None:
    """Counters when the region started ``revision``: kept while it runs the same one."""
    if old.get("revision") == revision and old.get("baseline"):
        try:
            return Counters.model_validate(old["baseline"])
        except ValidationError:
            pass
    return counters[0] if counters is not None else None


def _write(
    deps: HubDeps,
    owner: Owner,
    decision: Decision,
    regions: Sequence[Region],
    history: Mapping[str, dict[str, Any]],
    events: Events,
) -> None:
    by_name = {r.name: r for r in regions}
    for write in decision.writes:
        region = by_name[write.region]
        spec = history.get(write.revision)
        if spec is None:
            events.warn("RevisionMissing", f"revision {write.revision} is not in the history")
            continue
        try:
            kube = _member(deps, region)
            kube.apply(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": owner.namespace}}
            )
            kube.apply(
                member_pipeline(owner.name, owner.namespace, write.revision, spec, region.spec)
            )
        except KubeError as e:
            events.warn("WriteFailed", f"{region.name}: revision {write.revision}: {e}")
            continue
        events.info("Written", f"{region.name}: revision {write.revision}")


def _announce(previous: RolloutStatus | None, state: State, events: Events) -> None:
    if (
        previous is not None
        and previous.phase is state.phase
        and previous.revision == state.revision
    ):
        return
    text = f"revision {state.revision}: {state.phase.value} (wave {state.wave + 1})"
    if state.message:
        text += f": {state.message}"
    failed = state.phase in (RolloutPhase.HALTED, RolloutPhase.ROLLING_BACK, RolloutPhase.FAILED)
    (events.warn if failed else events.info)(f"Rollout{state.phase.value}", text)


# helpers


def _member(deps: HubDeps, region: Region) -> Kube:
    ref = region.spec.kubeconfig_secret_ref
    kubeconfig = deps.kube.secret_value(ref.namespace, ref.name, ref.key)
    return deps.members(kubeconfig)


def _revision_label(obj: Manifest) -> str:
    return str((obj["metadata"].get("labels") or {}).get(REVISION_LABEL, ""))


def _previous(status: Mapping[str, Any] | None) -> RolloutStatus | None:
    raw = (status or {}).get("rollout")
    if not raw:
        return None
    try:
        return RolloutStatus.model_validate(raw)
    except ValidationError:
        return None


def _state(previous: RolloutStatus | None) -> State | None:
    if previous is None or previous.phase is None or previous.phase_since is None:
        return None
    return State(
        revision=previous.revision,
        last_good=previous.last_good_revision,
        wave=max(0, previous.wave - 1),
        phase=previous.phase,
        since=previous.phase_since,
        reason=previous.reason,
        message=previous.message,
    )


def _status(
    previous_status: Mapping[str, Any] | None,
    decision: Decision | None,
    waves: int,
    seen: Seen,
    replicated: list[str],
    problem: Problem | None,
    generation: int,
    now: datetime,
) -> PipelineStatus:
    before = dict(previous_status or {})
    if decision is None:
        regions = [RegionRolloutStatus.model_validate(r) for r in before.get("regions") or []]
        rollout = _previous(before)
    else:
        state = decision.state
        regions = [
            RegionRolloutStatus(
                name=name,
                phase=view.phase,
                revision=seen.observations[name].revision,
                gates=seen.observations[name].gates or RegionRolloutStatus(name=name).gates,
                baseline=seen.baselines.get(name),
                message=view.message[:1024],
            )
            for name, view in decision.regions.items()
        ]
        rollout = RolloutStatus(
            revision=state.revision,
            last_good_revision=state.last_good,
            wave=state.wave + 1,
            waves=waves,
            phase=state.phase,
            reason=state.reason,
            phase_since=state.since,
            message=state.message[:2048],
            summary=f"wave {state.wave + 1}/{waves} {state.phase.value}",
        )
    healthy = sum(r.phase is RegionPhase.HEALTHY for r in regions)
    phase = rollout.phase if rollout else None
    if problem is not None:
        desired = [
            desired_condition(READY, False, problem.failure.value, problem.message),
            desired_condition(PROGRESSING, False, problem.failure.value, problem.message),
            desired_condition(DEGRADED, True, problem.failure.value, problem.message),
        ]
    else:
        reason = (rollout.reason if rollout else "") or (phase.value if phase else "Pending")
        message = rollout.message if rollout else ""
        stopped = phase in (
            RolloutPhase.HALTED,
            RolloutPhase.ROLLING_BACK,
            RolloutPhase.ROLLED_BACK,
            RolloutPhase.FAILED,
        )
        desired = [
            desired_condition(
                READY,
                phase is RolloutPhase.COMPLETE and healthy == len(regions),
                phase.value if phase else "Pending",
                message,
            ),
            desired_condition(
                PROGRESSING,
                phase in (RolloutPhase.PROGRESSING, RolloutPhase.BAKING, RolloutPhase.ROLLING_BACK),
                phase.value if phase else "Pending",
                message,
            ),
            desired_condition(DEGRADED, stopped, reason if stopped else "AsPlanned", message),
        ]
    return PipelineStatus(
        observed_generation=generation,
        conditions=merge_conditions(previous_conditions(before), desired, generation, now),
        regions=regions,
        regions_ready=f"{healthy}/{len(regions)}",
        rollout=rollout,
        replication_clusters=replicated,
    )
