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
from streamvane_operator.api.common import API_VERSION, ConditionStatus, Manifest, SecretKeyRef
from streamvane_operator.api.pipeline import (
    DeletionPolicy,
    PipelineSpec,
    PipelineStatus,
    SchemaCompatibility,
    StageSpec,
)
from streamvane_operator.api.validation import (
    InvalidSpecError,
    default_subscription,
    is_label_value,
    legacy_subscription,
    name_problems,
    parse,
    stage_suffixes,
)
from streamvane_operator.kube.client import Kube
from streamvane_operator.kube.errors import KubeError, KubeRejected
from streamvane_operator.pulsar.admin import PulsarAdmin, SubscriptionStats
from streamvane_operator.reconcile import preflight, schemas
from streamvane_operator.reconcile.common import (
    Deps,
    Events,
    Outcome,
    RetryLater,
    SecretNotFound,
    Stop,
    check_conflicts,
    converge_children,
    delete_children,
    measured,
    observe_children,
    problems,
    retry_delay,
)
from streamvane_operator.reconcile.memory import backlogs, spec_digest
from streamvane_operator.reconcile.ownership import merged, pipeline_id
from streamvane_operator.reconcile.replicas import hand_over_replicas, with_initial_replicas
from streamvane_operator.reconcile.status import (
    DEGRADED,
    READY,
    DesiredCondition,
    Problem,
    deployment_ready,
    pipeline_status,
    previous_condition,
    previous_conditions,
    previous_retiring,
    previous_subscriptions,
    stage_of,
    stage_status,
    stale_subscriptions,
    worker_failure,
)
from streamvane_operator.reconcile.topology import (
    TopologyChanges,
    delete_created,
    ensure_topology,
    retire_subscriptions,
    stage_load,
    subscription_stats,
    worker_connections,
)
from streamvane_operator.render.backend import resolve
from streamvane_operator.render.labels import PIPELINE_LABEL, Owner
from streamvane_operator.render.pipeline import render_pipeline
from streamvane_operator.render.topology import Topology, topology
from streamvane_worker.config import WorkerConfig

KIND = "Pipeline"
SKIP_PULSAR_CLEANUP = "streamvane.io/skip-pulsar-cleanup"
"""Annotation: "true" lets a Pipeline with deletionPolicy Delete go without reaching Pulsar
(unreachable for good); what it created there is kept and named in a warning event."""
NOT_FOUND = 404


def owner_of(name: str, namespace: str, uid: str) -> Owner:
    return Owner(API_VERSION, KIND, name, namespace, uid)


def reconcile_pipeline(
    deps: Deps,
    owner: Owner,
    raw_spec: Mapping[str, Any],
    generation: int,
    previous_status: Mapping[str, Any] | None,
) -> Outcome[PipelineStatus]:
    return measured(
        deps, KIND, lambda: _reconcile(deps, owner, raw_spec, generation, previous_status)
    )


def resync_needed(
    deps: Deps,
    owner: Owner,
    raw_spec: Mapping[str, Any],
    generation: int,
    status: Mapping[str, Any] | None,
) -> bool:
    """Whether a resync must reconcile: not while the create or resume handler is still to
    run, nor while the last full reconcile holds (``ReconcileMemory.nothing_to_do``) and the
    Pipeline still shows the readiness that reconcile found (a status written over since is
    put right at once, not at the next full resync). Reads nothing from Kubernetes."""
    if deps.memory.not_reconciled_yet(owner.uid):
        return False
    spec = spec_digest(raw_spec, generation)
    return not deps.memory.nothing_to_do(owner.uid, spec, ready=shows_ready(status))


def _reconcile(
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
    created = created_resources(previous_status)
    problem: Problem | None = None
    policy: SchemaCompatibility | None = None
    registered_targets: list[schemas.SchemaTarget] | None = None
    settled: tuple[PulsarAdmin, Topology] | None = None
    try:
        with problems():
            # The name becomes label selectors and Service names: check it before any call.
            bad_names = name_problems(KIND, owner.name, stage_suffixes(raw_spec))
            if bad_names:
                raise InvalidSpecError(bad_names)
            observed = observe_children(deps.kube, owner, PIPELINE_LABEL)
            spec = keep_legacy_subscriptions(parse(PipelineSpec, raw_spec), owner, previous_status)
            backends = inference_backends(deps.kube, owner.namespace)
            rendered = render_pipeline(owner, spec, backends, deps.defaults)
            refused = preflight.problem(
                _preflight(deps, owner, spec, backends, rendered.configs, observed)
            )
            if refused is not None:
                raise Stop(refused)
            topo = rendered.topology
            retiring = stale_subscriptions(previous_status, topo.subscription_names)
            desired = {s.name: s.scaling.min_replicas for s in spec.stages}
            check_conflicts(deps.kube, rendered.objects, observed, owner.uid)
            admin = pulsar_admin(deps, owner, spec)
            positions = {s.name: s.input.initial_position for s in spec.stages}
            shared = frozenset(spec.shared_outputs)
            kinds = tuple((s.name, s.type) for s in spec.stages)  # the messages they write
            checked_key = (
                admin.admin_url,
                topo,
                tuple(sorted(positions.items())),
                shared,
                kinds,
                spec.schema_compatibility,
            )
            known = deps.memory.known_stats(owner.uid, checked_key, admin, topo)
            changes = (
                ensure_topology(
                    admin, topo, pipeline_id(owner.namespace, owner.name), positions, shared
                )
                if known is None
                else TopologyChanges()  # checked recently, and the snapshot shows it all
            )
            created = (
                merged(created[0], changes.owned_topics),
                merged(created[1], changes.created_subscriptions, named_ours(owner, topo)),
            )
            for item in changes.created:
                events.info("PulsarResourceCreated", f"created {item}")
            for note in changes.notes:
                events.warn("TopicMismatch", note)
            # Before any Deployment: a refused schema leaves the running workers as they are.
            # Checked recently with the same stages and policy: registered as they are.
            policy = spec.schema_compatibility
            targets = schemas.schema_targets(spec, local_topics(topo, created[0]))
            if known is None:
                for registered in schemas.ensure_schemas(
                    admin, topo.tenant, topo.namespace, targets, policy, changes.new_topics
                ):
                    events.info("SchemaRegistered", f"registered {registered}")
            registered_targets = targets
            objects = with_initial_replicas(spec, rendered.objects, observed)
            hand_over_replicas(deps.kube, spec, observed)
            observed = converge_children(
                deps.kube, owner, PIPELINE_LABEL, objects, observed, events
            )
            hand_over_replicas(deps.kube, spec, observed)
            # Only subscriptions the Pipeline created are ever deleted.
            retiring = [r for r in retiring if r in created[1]]
            still = _retire(admin, spec.deletion_policy, retiring, events)
            gone = set(retiring) - set(still)
            created = (created[0], [s for s in created[1] if s not in gone])
            retiring = still
            # A backlog's age (the lag metric) needs the per-topic stats; none at rest.
            stats: Mapping[str, SubscriptionStats | None] = (
                known
                if known is not None and not any(s.backlog for s in known.values())
                else subscription_stats(admin, topo)
            )
            deps.memory.checked(owner.uid, checked_key)
            lag = backlogs(stats)
            now = deps.clock()
            deps.metrics.stage_loads(
                owner.namespace,
                owner.name,
                {stage: stage_load(s, now) for stage, s in stats.items() if s},
            )
            settled = (admin, topo)
    except Stop as stop:
        problem = stop.problem
        events.warn(problem.failure.value, problem.message)
    status = _status(
        deps,
        owner,
        generation,
        previous_status,
        observed,
        _pods(deps.kube, owner) if observed else [],  # no workers without their Deployments
        topo,
        desired,
        lag,
        problem,
        retiring,
        schemas.condition(problem, registered_targets, policy) if policy else None,
    )
    # Only a Pipeline without a problem and with nothing left to retire can wait for what
    # the watches or the snapshot report (one not Ready yet, for a while); anything else is
    # reconciled again at every resync.
    if settled is not None and problem is None and not retiring and not is_degraded(status):
        deps.memory.settled(
            owner.uid, spec_digest(raw_spec, generation), *settled, lag, ready=is_ready(status)
        )
    else:
        deps.memory.unsettle(owner.uid)
    return Outcome(
        status=status.model_copy(
            update={"created_topics": created[0], "created_subscriptions": created[1]}
        ),
        events=events,
        problem=problem,
        retry_after_s=retry_delay(deps, problem),
    )


def local_topics(topo: Topology, qualified: Sequence[str]) -> set[str]:
    """The local names of those of ``qualified`` in the topology's namespace."""
    return {t for t in (topic.name for topic in topo.topics) if topo.topic(t) in qualified}


def is_ready(status: PipelineStatus) -> bool:
    return has_condition(status, READY)


def shows_ready(status: Mapping[str, Any] | None) -> bool:
    """Whether a Pipeline's status as read from the API server says Ready."""
    ready = previous_condition(status, READY)
    return ready is not None and ready.status is ConditionStatus.TRUE


def is_degraded(status: PipelineStatus) -> bool:
    """Degraded: the reconcile's own problem, or the workers' (crashing, not starting)."""
    return has_condition(status, DEGRADED)


def has_condition(status: PipelineStatus, kind: str) -> bool:
    return any(c.type == kind and c.status is ConditionStatus.TRUE for c in status.conditions)


def named_ours(owner: Owner, topo: Topology) -> list[str]:
    """Stage subscriptions (side inputs' too) under the default name, which holds the
    namespace and Pipeline name: only this Pipeline creates them, whichever reconcile recorded
    them first."""
    return [
        f"{topo.topic(sub.topic)}#{sub.name}"
        for sub in topo.all_subscriptions
        if sub.name == default_subscription(owner.namespace, owner.name, sub.stage)
    ]


def created_resources(status: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
    """(topics, subscriptions) a stored status records as created by the Pipeline. A status
    of an older version, which recorded neither, vouches for its stage subscriptions: that
    version created every one it lacked."""
    status = status or {}
    topics = [str(t) for t in status.get("createdTopics") or []]
    if "createdSubscriptions" in status:
        return topics, [str(s) for s in status["createdSubscriptions"] or []]
    legacy = merged(previous_subscriptions(status).values(), previous_retiring(status))
    return topics, legacy


def keep_legacy_subscriptions(
    spec: PipelineSpec, owner: Owner, status: Mapping[str, Any] | None
) -> PipelineSpec:
    """Stages that read their input through the default subscription name of older versions
    (``<pipeline>-<stage>``, recorded in the status) keep it: renaming it would replay or
    skip messages. Every other stage gets ``<namespace>.<pipeline>-<stage>`` by default."""
    recorded = previous_subscriptions(status)

    def kept(stage: StageSpec) -> StageSpec:
        if stage.input.subscription is not None:
            return stage
        legacy = legacy_subscription(owner.name, stage.name)
        if not recorded.get(stage.name, "").endswith(f"/{stage.input.topic}#{legacy}"):
            return stage
        pinned = stage.input.model_copy(update={"subscription": legacy})
        return stage.model_copy(update={"input": pinned})

    return spec.model_copy(update={"stages": [kept(s) for s in spec.stages]})


def _preflight(
    deps: Deps,
    owner: Owner,
    spec: PipelineSpec,
    backends: Mapping[str, InferenceBackendSpec],
    configs: Mapping[str, WorkerConfig],
    observed: Sequence[Manifest],
) -> list[str]:
    """Check what the edit changes (service URL, Triton, model); the failures."""
    ca_secrets: dict[str, SecretKeyRef | None] = {}
    connect_ms: dict[str, int] = {}
    for stage in spec.stages:
        if stage.model is not None and stage.model.backend in backends:
            backend = backends[stage.model.backend]
            resolved = resolve(stage.model.backend, owner.namespace, backend)
            ca_secrets[stage.name] = resolved.tls.ca_secret_ref
            connect_ms[stage.name] = backend.timeouts.connect_ms
    found = preflight.targets(configs, preflight.running_configs(observed), ca_secrets, connect_ms)
    failures: list[str] = []
    ca_pem: dict[SecretKeyRef, str] = {}
    for target in found:
        if not isinstance(target, preflight.Model) or target.ca_secret is None:
            continue
        ref = target.ca_secret
        try:
            ca_pem[ref] = deps.kube.secret_value(owner.namespace, ref.name, ref.key)
        except KubeError as e:
            failures.append(f"CA of Triton at {target.url}: {e}")
    return failures + preflight.run(deps.preflight, found, ca_pem)


def _status(
    deps: Deps,
    owner: Owner,
    generation: int,
    previous_status: Mapping[str, Any] | None,
    observed: list[Manifest],
    pods: Sequence[Manifest],
    topo: Topology | None,
    desired: Mapping[str, int],
    lag: Mapping[str, int | None],
    problem: Problem | None,
    retiring: Sequence[str],
    schemas_condition: DesiredCondition | None,
) -> PipelineStatus:
    deployments = {stage_of(d): d for d in observed if d["kind"] == "Deployment"}
    failing = {
        name: failure
        for name in deployments
        if (failure := worker_failure(name, [p for p in pods if stage_of(p) == name]))
    }
    if topo is not None:
        subscriptions = topo.stage_subscriptions
    else:
        # The spec is unusable: report the workers that still run the last good one.
        known = previous_subscriptions(previous_status)
        subscriptions = {name: known.get(name, "") for name in sorted(deployments)}
    stages = [
        stage_status(
            name,
            deployments.get(name),
            sub,
            lag.get(name),
            desired.get(name, 0),
            failing.get(name),
        )
        for name, sub in subscriptions.items()
    ]
    ready = {
        name for name, d in deployments.items() if name in subscriptions and deployment_ready(d)
    }
    if problem is not None and problem.failure.rolled_back and deployments:
        problem = Problem(
            problem.failure,
            f"{problem.message}. The workers of the last valid spec keep running.",
        )
    if problem is None and failing:
        # The workers' own words: what the reconcile could not see failing.
        problem = Problem(
            next(iter(failing.values())).failure,
            "; ".join(f.describe() for f in failing.values()),
        )
    return pipeline_status(
        generation=generation,
        stages=stages,
        ready_stages=ready,
        problem=problem,
        previous=previous_conditions(previous_status),
        now=deps.clock(),
        retiring_subscriptions=retiring,
        schemas=schemas_condition,
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


def delete_pipeline(
    deps: Deps,
    owner: Owner,
    raw_spec: Mapping[str, Any],
    status: Mapping[str, Any] | None,
    annotations: Mapping[str, str],
) -> Events:
    """Stop the workers (delete children), then, if the policy says Delete, remove what the
    Pipeline created in Pulsar (as its status records) and nothing else.

    Children are deleted explicitly rather than left to the garbage collector, so workers
    stop before any topic disappears. Raises RetryLater while Pulsar must be reached. A
    Pipeline whose name could never be used, or that created nothing in Pulsar, goes without
    a call to the server it cannot have touched.
    """
    events = Events()
    topics, subscriptions = created_resources(status)
    try:
        with problems():
            if is_label_value(owner.name):
                delete_children(deps.kube, owner, PIPELINE_LABEL)
            deps.metrics.forget_pipeline(owner.namespace, owner.name)
            deps.memory.forget(owner.uid)
            spec = parse(PipelineSpec, raw_spec)
            if spec.deletion_policy is DeletionPolicy.RETAIN:
                events.info(
                    "TopicsRetained", "deletionPolicy is Retain: topics and subscriptions are kept"
                )
                return events
            if not topics and not subscriptions:
                events.info("TopicsDeleted", "nothing to delete: this Pipeline created no topic")
                return events
            if annotations.get(SKIP_PULSAR_CLEANUP) == "true":
                events.warn(
                    "PulsarCleanupSkipped",
                    f"{SKIP_PULSAR_CLEANUP} is set: kept " + ", ".join([*topics, *subscriptions]),
                )
                return events
            admin = pulsar_admin(deps, owner, spec)
            connected = worker_connections(admin, topology(owner.namespace, owner.name, spec))
            if connected:
                raise RetryLater(
                    f"waiting for workers to stop ({connected} Pulsar connections) "
                    "before deleting topics",
                    deps.retry_workers_s,
                )
            cleanup = delete_created(
                admin, pipeline_id(owner.namespace, owner.name), topics, subscriptions
            )
            events.info("TopicsDeleted", "deleted " + ", ".join(cleanup.deleted or ["nothing"]))
            if cleanup.kept:
                events.warn("TopicsKept", "kept " + "; ".join(cleanup.kept))
    except Stop as stop:
        delay = retry_delay(deps, stop.problem)
        if delay is None:
            # An unparsable spec cannot say to delete topics: keeping data is the safe side.
            events.warn("TopicsRetained", f"topics kept: {stop.problem.message}")
            return events
        raise RetryLater(
            f"{stop.problem.message}; to delete the Pipeline without cleaning up Pulsar, "
            f"annotate it {SKIP_PULSAR_CLEANUP}=true",
            delay,
        ) from stop
    return events


def _pods(kube: Kube, owner: Owner) -> list[Manifest]:
    """The Pipeline's worker pods, for their container statuses; none if they cannot be read
    (status then says only what the Deployments say)."""
    try:
        selector = f"{PIPELINE_LABEL}={owner.name}"
        return kube.list("v1", "Pod", owner.namespace, selector, cached=True)
    except KubeError:
        return []


def inference_backends(kube: Kube, namespace: str) -> dict[str, InferenceBackendSpec]:
    """Valid InferenceBackends in ``namespace`` by name; invalid ones report on themselves,
    and one being deleted is gone already."""
    found = {}
    for obj in kube.list(API_VERSION, "InferenceBackend", namespace, cached=True):
        if obj["metadata"].get("deletionTimestamp"):
            continue
        try:
            found[obj["metadata"]["name"]] = InferenceBackendSpec.model_validate(obj.get("spec"))
        except ValidationError:
            continue
    return found


def pulsar_admin(deps: Deps, owner: Owner, spec: PipelineSpec) -> PulsarAdmin:
    """An admin client with the spec's token and CA. Both Secrets are read even where the
    operator needs neither (workers mount them), so a missing one stops the reconcile before
    any worker rolls. Raises SecretNotFound."""
    pulsar = spec.pulsar
    token = _secret(deps, owner, pulsar.auth_secret_ref, "spec.pulsar.authSecretRef")
    ca = _secret(deps, owner, pulsar.ca_secret_ref, "spec.pulsar.tls.caSecretRef")
    return deps.pulsar(pulsar.admin_url, token, ca=ca if pulsar.tls_admin else None)


def _secret(deps: Deps, owner: Owner, ref: SecretKeyRef | None, field: str) -> str | None:
    if ref is None:
        return None
    try:
        return deps.kube.secret_value(owner.namespace, ref.name, ref.key)
    except KubeRejected as e:
        if e.status != NOT_FOUND:
            raise
        raise SecretNotFound(
            f"{field}: Secret {owner.namespace}/{ref.name} with key {ref.key!r} not found: "
            "create it, or fix the reference"
        ) from e
