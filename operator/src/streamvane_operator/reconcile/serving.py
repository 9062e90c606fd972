"""ModelServing: the model version Triton serves for each ranking stage that follows model
versions (``params.modelVersionsTopic``), as the online trainer last announced it there.

Each announcement (the worker's ``ModelVersion``, keyed by model name) says which version it is
about, whether it was promoted, why, and which version serves after it. A timer of its own
(every ``--model-serving-seconds``, only for Pipelines that follow model versions) reads the
newest few entries of the topic (Pulsar admin ``examinemessage``, no subscription, nothing
consumed), shared by every Pipeline reading the same topic within ``announcements_ttl_s``, and
writes the condition only when it changed, over the status it read (when another writer got
there first, over the status read again). It alone writes it: the reconcile keeps it as stored,
so it never puts back an older reading. A version kept out or a rollback is a warning Event
once, when the condition first says it; while the topic cannot be read, the condition says so
with the last reading, so the warning is not posted again once it can.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from streamvane_operator.api.common import Condition, ConditionStatus
from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.api.validation import InvalidSpecError, parse
from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.kube.errors import KubeError, KubeRejected
from streamvane_operator.pulsar.admin import PulsarAdmin, TopicName
from streamvane_operator.pulsar.entries import EntryMalformed
from streamvane_operator.pulsar.errors import PulsarError
from streamvane_operator.reconcile.common import Deps, Events, SecretNotFound, write_conditions
from streamvane_operator.reconcile.memory import ReconcileMemory
from streamvane_operator.reconcile.pipeline import pulsar_admin
from streamvane_operator.reconcile.status import (
    MODEL_SERVING,
    DesiredCondition,
    previous_condition,
    replaced_condition,
)
from streamvane_operator.render.labels import Owner
from streamvane_operator.render.worker import model_versions_topic

WRITE_ATTEMPTS = 3
"""Writes of one tick's condition, each over the status read again after a conflict."""
CONFLICT = 409
NEWEST_ENTRIES = 4
"""Entries read at most from the end of a model-versions topic, until two announcements of the
model are found (the one before the newest tells a rollback): other models' announcements may
be interleaved."""

KEPT_OUT = "VersionKeptOut"
ROLLED_BACK = "RolledBack"
SERVING = "VersionServing"
NONE_ANNOUNCED = "NoVersionAnnounced"
UNREADABLE = "AnnouncementsUnreadable"
EVENT_REASONS = {KEPT_OUT: "ModelVersionKeptOut", ROLLED_BACK: "ModelVersionRolledBack"}


class Announcement(BaseModel):
    """What the status needs of the worker's ``ModelVersion`` (stages/model_version.py: the
    operator does not import the worker's stages); other fields are ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    model: str
    version: int
    promoted: bool
    serving_version: int
    reason: str = ""


@dataclass(frozen=True)
class ServingTarget:
    stage: str
    model: str
    topic: str
    """Fully qualified."""


@dataclass(frozen=True)
class Verdict:
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class Refresh:
    """What one tick writes (pure ``refresh``)."""

    conditions: list[dict[str, Any]] | None
    """The stored conditions with ModelServing as read now; None: the stored one says it."""
    warnings: list[Verdict]
    """Posted once the conditions are written (a write refused is compared again next tick)."""


@dataclass(frozen=True)
class TickOutcome:
    events: Events = field(default_factory=Events)
    unwritten: str | None = None
    """Why the condition was not written this tick; the next one tries again."""


def needs_ticks(raw_spec: Mapping[str, Any], status: Mapping[str, Any] | None) -> bool:
    """Whether a Pipeline needs the model-serving timer: a stage that follows model versions,
    or a ModelServing condition still to clear (pure)."""
    if previous_condition(status, MODEL_SERVING) is not None:
        return True
    try:
        return bool(serving_targets(parse(PipelineSpec, raw_spec)))
    except InvalidSpecError:
        return False  # the reconcile reports it


def serving_targets(spec: PipelineSpec) -> list[ServingTarget]:
    """The stages that follow model versions, with their model and topic (pure)."""
    found = []
    for stage in spec.stages:
        topic = model_versions_topic(spec, stage)
        # A tagging stage follows its trained head's versions, not its embedding model's.
        head = stage.typed_params().get("headModel")
        model = head if isinstance(head, str) else stage.model.name if stage.model else None
        if topic is not None and model is not None:
            found.append(ServingTarget(stage.name, model, topic))
    return found


def announcements(payloads: Sequence[bytes], model: str) -> list[Announcement]:
    """The announcements about ``model`` among ``payloads``, in their order (pure); others and
    what does not parse are skipped."""
    found = []
    for payload in payloads:
        try:
            announcement = Announcement.model_validate_json(payload)
        except ValidationError:
            continue
        if announcement.model == model:
            found.append(announcement)
    return found


def verdict(target: ServingTarget, newest_first: Sequence[Announcement]) -> Verdict:
    """What the newest announcement (and the one before it) say about serving (pure)."""
    if not newest_first:
        return Verdict(
            ConditionStatus.UNKNOWN,
            NONE_ANNOUNCED,
            f"no {target.model} version announced on {target.topic} yet: Triton's default "
            "version serves",
        )
    newest, before = newest_first[0], newest_first[1:2]
    why = f": {newest.reason}" if newest.reason else ""
    if not newest.promoted and newest.version != newest.serving_version:
        return Verdict(
            ConditionStatus.TRUE,
            KEPT_OUT,
            f"{target.model} version {newest.version} kept out{why}; "
            f"version {newest.serving_version} serving",
        )
    if before and newest.serving_version < before[0].serving_version:
        return Verdict(
            ConditionStatus.TRUE,
            ROLLED_BACK,
            f"{target.model} rolled back to version {newest.serving_version} "
            f"(from {before[0].serving_version}){why}",
        )
    return Verdict(
        ConditionStatus.TRUE,
        SERVING,
        f"{target.model} version {newest.serving_version} serving{why}",
    )


def condition(verdicts: Sequence[Verdict]) -> DesiredCondition | None:
    """One condition for all stages: the first warning's reason (else the first's), every
    message; None without stages that follow model versions (pure)."""
    if not verdicts:
        return None
    lead = next((v for v in verdicts if v.reason in EVENT_REASONS), verdicts[0])
    status = (
        ConditionStatus.TRUE
        if all(v.status is ConditionStatus.TRUE for v in verdicts)
        else ConditionStatus.UNKNOWN
    )
    message = "; ".join(v.message for v in verdicts)[:2048]
    return DesiredCondition(MODEL_SERVING, status, lead.reason, message)


def new_warnings(verdicts: Sequence[Verdict], previous: Condition | None) -> list[Verdict]:
    """Kept-out and rolled-back verdicts the previous condition did not say yet (pure): each
    is posted as an Event once."""
    said = previous.message if previous is not None else ""
    return [v for v in verdicts if v.reason in EVENT_REASONS and v.message not in said]


def _two_of(model: str, payloads: Sequence[bytes]) -> bool:
    return len(announcements(payloads, model)) >= 2


def observe(
    memory: ReconcileMemory, admin: PulsarAdmin, targets: Sequence[ServingTarget]
) -> list[Verdict]:
    """Read the newest announcements of each target's topic and judge them."""
    found = []
    for target in targets:
        topic = TopicName.parse(target.topic)
        try:
            payloads = memory.newest_payloads(
                admin, topic, NEWEST_ENTRIES, partial(_two_of, target.model), target.model
            )
        except (PulsarError, EntryMalformed) as e:
            last = memory.last_newest_payloads(admin, topic, target.model)
            last_verdict = (
                None if last is None else verdict(target, announcements(last, target.model))
            )
            found.append(unreadable(target, str(e), last_verdict))
            continue
        found.append(verdict(target, announcements(payloads, target.model)))
    return found


def unreadable(target: ServingTarget, error: str, last: Verdict | None) -> Verdict:
    """The topic could not be read: says why, and what the last reading said (pure), so that
    a warning it said is not new again once the topic can be read."""
    said = f"; last read: {last.message}" if last is not None else ""
    return Verdict(ConditionStatus.UNKNOWN, UNREADABLE, f"{target.topic}: {error}{said}")


def refresh(status: Mapping[str, Any], verdicts: Sequence[Verdict], now: datetime) -> Refresh:
    """The conditions to write for ``verdicts`` (without any: ModelServing removed) and the
    warnings the stored condition did not say yet; nothing when it already says it (pure)."""
    conditions = replaced_condition(status, condition(verdicts), MODEL_SERVING, now)
    if conditions is None:
        return Refresh(None, [])
    return Refresh(conditions, new_warnings(verdicts, previous_condition(status, MODEL_SERVING)))


def refresh_pipeline(
    deps: Deps,
    owner: Owner,
    raw_spec: Mapping[str, Any],
    status: Mapping[str, Any],
    resource_version: str,
) -> TickOutcome:
    """The model-serving timer's tick: read the announcements, write the condition if it
    changed (only over the status read at ``resource_version``), then its new warnings."""
    try:
        spec = parse(PipelineSpec, raw_spec)
    except InvalidSpecError:
        return TickOutcome()  # the reconcile reports it
    targets = serving_targets(spec)
    verdicts: list[Verdict] = []
    if targets:
        try:
            verdicts = observe(deps.memory, pulsar_admin(deps, owner, spec), targets)
        except (KubeError, SecretNotFound) as e:
            return TickOutcome(unwritten=f"Pulsar credentials unavailable: {e}")
    found, refused = write_refreshed(deps, owner, verdicts, status, resource_version)
    if refused is not None:
        return TickOutcome(unwritten=str(refused))
    events = Events()
    for warning in found.warnings:
        events.warn(EVENT_REASONS[warning.reason], warning.message)
    return TickOutcome(events)


def write_refreshed(
    deps: Deps,
    owner: Owner,
    verdicts: Sequence[Verdict],
    status: Mapping[str, Any],
    resource_version: str,
) -> tuple[Refresh, KubeError | None]:
    """Write what ``refresh`` makes of ``verdicts`` over ``status``; when another writer got
    there first (the create handler, on a new Pipeline), over the status read again, up to
    ``WRITE_ATTEMPTS`` writes, rather than a whole interval later. Returns what was written
    and why the last write was refused."""
    ref = ObjectRef(owner.api_version, owner.kind, owner.namespace, owner.name)
    found = refresh(status, verdicts, deps.clock())
    refused = write_conditions(deps.kube, owner, found.conditions, resource_version)
    for _ in range(WRITE_ATTEMPTS - 1):
        if not (isinstance(refused, KubeRejected) and refused.status == CONFLICT):
            break
        try:
            fresh = deps.kube.get(ref)
        except KubeError as e:
            return found, e
        if fresh is None:
            break  # deleted meanwhile: the write's error says so
        found = refresh(fresh.get("status") or {}, verdicts, deps.clock())
        version = str(fresh["metadata"]["resourceVersion"])
        refused = write_conditions(deps.kube, owner, found.conditions, version)
    return found, refused
