"""Desired vs observed children -> what to apply and what to delete (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

from streamvane_operator.api.common import Manifest
from streamvane_operator.kube.client import ObjectRef

QUANTITY_MAPS = frozenset({"requests", "limits", "hard", "capacity"})
"""Keys whose values are resource quantities (container resources, quotas)."""
QUANTITY_FIELDS = frozenset({"sizeLimit"})
"""Single quantity fields (emptyDir)."""

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


def contains(observed: Any, desired: Any, key: str = "") -> bool:
    """True when every field set in ``desired`` has the same value in ``observed``.

    Fields the API server adds (defaults, status, managedFields) do not count as drift, nor
    do quantities it wrote in canonical form (``1`` as "1", "0.5" as "500m", "1024Mi" as
    "1Gi"): comparing those literally would re-apply the object on every resync.
    """
    if isinstance(desired, dict):
        quantities = key in QUANTITY_MAPS
        return isinstance(observed, dict) and all(
            name in observed
            and (
                same_quantity(observed[name], value)
                if quantities
                else contains(observed[name], value, name)
            )
            for name, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(contains(o, d) for o, d in zip(observed, desired, strict=True))
        )
    if key in QUANTITY_FIELDS:
        return same_quantity(observed, desired)
    return bool(observed == desired)


def same_quantity(observed: Any, desired: Any) -> bool:
    """Equal as Kubernetes quantities; literally equal when either is not one."""
    if observed == desired:
        return True
    return _quantity(observed) is not None and _quantity(observed) == _quantity(desired)


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        return Decimal(parse_quantity(value))
    except ValueError:
        return None


def owned_by(obj: Manifest, owner_uid: str) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner_uid for ref in refs)


def _rank(kind: str) -> int:
    return _DELETE_ORDER.index(kind) if kind in _DELETE_ORDER else len(_DELETE_ORDER)
