"""What every reconciler shares: dependencies, outcomes and failure translation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from streamvane_operator.api.common import Manifest
from streamvane_operator.api.validation import InvalidSpecError
from streamvane_operator.kube.client import Kube, ObjectRef
from streamvane_operator.kube.errors import KubeError, KubeNotServed, KubeUnavailable
from streamvane_operator.metrics import OperatorMetrics
from streamvane_operator.preflight.probes import ModelCheck, NetworkPreflight
from streamvane_operator.pulsar.admin import PulsarAdmin
from streamvane_operator.pulsar.errors import (
    PulsarError,
    PulsarMisconfigured,
    PulsarUnauthorized,
    PulsarUnavailable,
)
from streamvane_operator.reconcile.memory import ReconcileMemory
from streamvane_operator.reconcile.ownership import object_conflicts
from streamvane_operator.reconcile.plan import owned_by, plan
from streamvane_operator.reconcile.schemas import SchemaRefused
from streamvane_operator.reconcile.status import Failure, Problem
from streamvane_operator.reconcile.topology import TopicConflict
from streamvane_operator.render.labels import Owner
from streamvane_operator.render.worker import WorkerDefaults
from streamvane_operator.scaling.signals import MetricsReader, ModelCounters

CHILD_KINDS = (
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("policy/v1", "PodDisruptionBudget"),
    ("apps/v1", "Deployment"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
)
"""Every kind a reconciler creates; observed together to find drift and leftovers."""
OPTIONAL_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}
"""Kinds of CRDs a cluster may not have (KEDA): none of them exist there."""

StatusT = TypeVar("StatusT", bound=BaseModel)


class Preflight(Protocol):
    """``reconcile.preflight``'s checks (the network ones, or a fake in unit tests)."""

    def broker(self, service_url: str) -> None: ...

    def model(self, check: ModelCheck) -> None: ...


class PulsarFactory(Protocol):
    def __call__(self, admin_url: str, token: str | None, ca: str | None = None) -> PulsarAdmin: ...


class SecretNotFound(Exception):
    """A Secret (or key) the spec refers to does not exist; the message names the field."""


class MetricsSource(Protocol):
    def __call__(self, url: str) -> dict[str, ModelCounters]:
        """Model name -> counters; raises MetricsUnavailable."""
        ...


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Deps:
    kube: Kube
    pulsar: PulsarFactory
    defaults: WorkerDefaults
    clock: Callable[[], datetime] = utcnow
    retry_transient_s: float = 10.0
    """Delay before retrying after Pulsar or the API server was unreachable."""
    retry_rejected_s: float = 60.0
    """Delay before retrying after Pulsar or the API server refused a request."""
    retry_workers_s: float = 2.0
    """Delay between checks that deleted workers have stopped."""
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    preflight: Preflight = field(default_factory=NetworkPreflight)
    """Checks the broker and models an edit points at before workers roll."""
    triton_metrics: MetricsSource = field(default_factory=MetricsReader)
    """Reads a Triton metrics endpoint (the autoscaler's saturation signal)."""
    monotonic: Callable[[], float] = time.monotonic
    """The autoscaler's steady clock."""
    memory: ReconcileMemory = field(default_factory=ReconcileMemory)
    """What reconciles remember of each other (``reconcile.memory``)."""


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the custom resource."""

    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Events:
    items: list[Event] = field(default_factory=list)

    def info(self, reason: str, message: str) -> None:
        self.items.append(Event(reason, message))

    def warn(self, reason: str, message: str) -> None:
        self.items.append(Event(reason, message, warning=True))


@dataclass(frozen=True)
class Outcome(Generic[StatusT]):
    """What one reconcile produced: the status to write, events to post, what went wrong."""

    status: StatusT
    events: Events
    problem: Problem | None
    retry_after_s: float | None
    """Seconds until the next attempt; None when done or when only a spec change can help."""


UNEXPECTED = "Unexpected"
"""Reason counted for a reconcile that raised instead of returning an Outcome."""


def measured(deps: Deps, kind: str, run: Callable[[], Outcome[StatusT]]) -> Outcome[StatusT]:
    """Run one reconcile, timing it and counting its result and failure reason."""
    start = time.perf_counter()
    try:
        outcome = run()
    except Exception:
        deps.metrics.reconciled(kind, time.perf_counter() - start, UNEXPECTED)
        raise
    reason = outcome.problem.failure.value if outcome.problem is not None else None
    deps.metrics.reconciled(kind, time.perf_counter() - start, reason)
    return outcome


class RetryLater(Exception):
    """Reconciling cannot finish now; try again after ``delay_s``."""

    def __init__(self, message: str, delay_s: float) -> None:
        super().__init__(message)
        self.delay_s = delay_s


def retry_delay(deps: Deps, problem: Problem | None) -> float | None:
    """Seconds until the next attempt; None when retrying cannot help (fix the spec)."""
    if problem is None or problem.failure is Failure.INVALID_SPEC:
        return None
    return deps.retry_transient_s if problem.failure.transient else deps.retry_rejected_s


class ObjectConflict(Exception):
    """Objects the reconciler would write exist and belong to someone else."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))


class Stop(Exception):
    """Raised inside ``problems()`` blocks to carry the classified problem out."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@contextmanager
def problems() -> Iterator[None]:
    """Translate client and spec errors into a classified Problem (raised as Stop)."""
    try:
        yield
    except InvalidSpecError as e:
        raise Stop(Problem(Failure.INVALID_SPEC, str(e))) from e
    except ObjectConflict as e:
        raise Stop(Problem(Failure.NAME_CONFLICT, str(e))) from e
    except TopicConflict as e:
        raise Stop(Problem(Failure.TOPIC_CONFLICT, str(e))) from e
    except SecretNotFound as e:
        raise Stop(Problem(Failure.SECRET_NOT_FOUND, str(e))) from e
    except SchemaRefused as e:
        raise Stop(
            Problem(
                Failure.INCOMPATIBLE_SCHEMA,
                f"{e} (nothing was rolled; checked again at the next reconcile)",
            )
        ) from e
    except PulsarUnavailable as e:
        raise Stop(Problem(Failure.PULSAR_UNAVAILABLE, f"Pulsar is unreachable: {e}")) from e
    except PulsarUnauthorized as e:
        raise Stop(
            Problem(
                Failure.PULSAR_UNAUTHORIZED,
                f"Pulsar refused the credentials: {e}. Check the token in spec.pulsar."
                "authSecretRef: signed for this cluster, not expired, a role allowed to "
                "administer the tenant",
            )
        ) from e
    except PulsarMisconfigured as e:
        raise Stop(
            Problem(
                Failure.PULSAR_TLS,
                f"cannot talk to Pulsar over TLS: {e}. spec.pulsar.tls.caSecretRef must hold "
                "the CA (PEM) that signed the brokers' certificates",
            )
        ) from e
    except PulsarError as e:
        raise Stop(Problem(Failure.PULSAR_REJECTED, f"Pulsar refused a request: {e}")) from e
    except KubeUnavailable as e:
        raise Stop(Problem(Failure.KUBE_UNAVAILABLE, str(e))) from e
    except KubeError as e:
        raise Stop(Problem(Failure.KUBE_REJECTED, str(e))) from e


def observe_children(kube: Kube, owner: Owner, owner_label: str) -> list[Manifest]:
    """The owner's children: objects labelled ``owner_label=<owner name>`` that it owns."""
    selector = f"{owner_label}={owner.name}"
    found: list[Manifest] = []
    for api_version, kind in CHILD_KINDS:
        try:
            objects = kube.list(api_version, kind, owner.namespace, selector, cached=True)
        except KubeNotServed:
            if (api_version, kind) in OPTIONAL_KINDS:
                continue
            raise
        found.extend(obj for obj in objects if owned_by(obj, owner.uid))
    return found


def check_conflicts(
    kube: Kube, desired: Sequence[Manifest], observed: Sequence[Manifest], owner_uid: str
) -> None:
    """Raise ObjectConflict when an object to be written exists and is not the owner's:
    it is never taken over (nor, later, deleted). Reads only the names not yet observed."""
    ours = {ObjectRef.of(obj) for obj in observed}
    found = {}
    for obj in desired:
        ref = ObjectRef.of(obj)
        if ref not in ours:
            existing = kube.get(ref)
            if existing is not None:
                found[ref] = existing
    conflicts = object_conflicts(desired, found, owner_uid)
    if conflicts:
        raise ObjectConflict(conflicts)


def converge_children(
    kube: Kube,
    owner: Owner,
    owner_label: str,
    desired: Sequence[Manifest],
    observed: list[Manifest],
    events: Events,
) -> list[Manifest]:
    """Apply what is missing or drifted, delete what nothing desires; the children afterwards
    (what the API server returned for each apply, without listing them again)."""
    todo = plan(desired, observed, owner.uid)
    applied = {ObjectRef.of(obj): kube.apply(obj) for obj in todo.apply}
    for ref in todo.delete:
        kube.delete(ref)
    if todo.empty:
        return observed
    summary = [f"applied {o['kind']} {o['metadata']['name']}" for o in todo.apply]
    summary += [f"deleted {ref.kind} {ref.name}" for ref in todo.delete]
    events.info("Reconciled", "; ".join(summary))
    return after_changes(observed, applied, todo.delete)


def after_changes(
    observed: Sequence[Manifest],
    applied: Mapping[ObjectRef, Manifest],
    deleted: Sequence[ObjectRef],
) -> list[Manifest]:
    """``observed`` with the applied objects as the server returned them and the deleted
    ones gone (pure)."""
    gone = set(deleted) | set(applied)
    kept = [obj for obj in observed if ObjectRef.of(obj) not in gone]
    return kept + [applied[ref] for ref in applied if ref not in deleted]


def delete_children(kube: Kube, owner: Owner, owner_label: str) -> None:
    """Children are deleted explicitly so nothing depends on a garbage collector."""
    for ref in plan([], observe_children(kube, owner, owner_label), owner.uid).delete:
        kube.delete(ref)


def write_conditions(
    kube: Kube, owner: Owner, conditions: list[dict[str, Any]] | None, resource_version: str
) -> KubeError | None:
    """Write the owner's status conditions (None: nothing to write) only over the status read
    at ``resource_version``: a timer that owns one condition must not drop what another
    writer wrote since. Returns why not (changed since: a 409 ``KubeRejected``, or
    unreachable)."""
    if conditions is None:
        return None
    ref = ObjectRef(owner.api_version, owner.kind, owner.namespace, owner.name)
    try:
        kube.patch_status(ref, {"conditions": conditions}, resource_version)
    except KubeError as e:
        return e
    return None
