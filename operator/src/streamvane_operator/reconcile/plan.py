"""Desired vs observed children -> what to apply and what to delete (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamvane_operator.api.common import Manifest
from streamvane_operator.kube.client import ObjectRef

_DELETE_ORDER = (
    "ScaledObject",
    "TriggerAuthentication",
    "Deployment",
    "PodDisruptionBudget",
    "Service",
    "ConfigMap",
)


@dataclass(frozen=True)
class Plan:
    apply: tuple[Manifest, ...]
    """Objects missing or drifted, in the order given (ConfigMaps before Deployments)."""
    delete: tuple[ObjectRef, ...]
    """Owned objects nothing desires any more; autoscalers, then workloads, so pods stop
    before their config goes."""

    @property
    def empty(self) -> bool:
        return not self.apply and not self.delete


def plan(desired: Sequence[Manifest], observed: Sequence[Manifest], owner_uid: str) -> Plan:
    """``observed`` may hold objects of other owners (same labels); only ours are deleted."""
    by_ref = {ObjectRef.of(obj): obj for obj in observed}
    wanted = {ObjectRef.of(obj) for obj in desired}
    to_apply = tuple(
        obj
        for obj in desired
        if ObjectRef.of(obj) not in by_ref or not contains(by_ref[ObjectRef.of(obj)], obj)
    )
    stale = [ref for ref, obj in by_ref.items() if ref not in wanted and owned_by(obj, owner_uid)]
    stale.sort(key=lambda ref: (_rank(ref.kind), ref.name))
    return Plan(apply=to_apply, delete=tuple(stale))


def contains(observed: Any, desired: Any) -> bool:
    """True when every field set in ``desired`` has the same value in ``observed``.

    Fields the API server adds (defaults, status, managedFields) do not count as drift.
    """
    if isinstance(desired, dict):
        return isinstance(observed, dict) and all(
            key in observed and contains(observed[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(contains(o, d) for o, d in zip(observed, desired, strict=True))
        )
    return bool(observed == desired)


def owned_by(obj: Manifest, owner_uid: str) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner_uid for ref in refs)


def _rank(kind: str) -> int:
    return _DELETE_ORDER.index(kind) if kind in _DELETE_ORDER else len(_DELETE_ORDER)
