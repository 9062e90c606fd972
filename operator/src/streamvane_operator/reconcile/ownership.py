"""Who owns what (pure): Kubernetes objects by owner reference, Pulsar topics by a property.

A Pipeline creates its topics with ``streamvane.io/owner=<namespace>/<name>``; it writes into
topics of other Pipelines only where ``spec.sharedOutputs`` says so, starts new subscriptions
on topics that are not its own at the latest message, and deletes only what it created.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from streamvane_operator.api.common import Manifest
from streamvane_operator.api.pipeline import InitialPosition
from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.reconcile.plan import owned_by
from streamvane_operator.render.topology import Topology

OWNER_PROPERTY = "streamvane.io/owner"
"""Topic property naming the Pipeline (``<namespace>/<name>``) that created the topic."""


def pipeline_id(namespace: str, name: str) -> str:
    """A Pipeline's identity as an owner of Pulsar resources: stable across re-creation, so
    a Pipeline re-created under the same name takes over what its predecessor retained."""
    return f"{namespace}/{name}"


def object_conflicts(
    desired: Sequence[Manifest], found: Mapping[ObjectRef, Manifest], owner_uid: str
) -> list[str]:
    """The desired objects that exist but belong to someone else (``found``: what exists
    under the desired names), each as a message naming it and saying what to do."""
    problems = []
    for obj in desired:
        ref = ObjectRef.of(obj)
        existing = found.get(ref)
        if existing is None or owned_by(existing, owner_uid):
            continue
        owners = existing.get("metadata", {}).get("ownerReferences") or []
        by = ", ".join(f"{o.get('kind')} {o.get('name')}" for o in owners) or "nobody"
        problems.append(
            f"{ref} already exists and was not created by this resource (owned by {by}); "
            "it is left alone: delete or rename it, or rename this resource (or the stage)"
        )
    return problems


@dataclass(frozen=True)
class ObservedTopic:
    partitions: int
    """0 means non-partitioned."""
    owner: str | None
    """The owner property; None when the topic has none (made by hand or a producer)."""


def foreign_outputs(
    topo: Topology,
    me: str,
    observed: Mapping[str, ObservedTopic],
    shared: Collection[str],
) -> list[str]:
    """Topics the workers would publish to that another Pipeline owns and ``shared`` (the
    spec's sharedOutputs) does not list."""
    problems = []
    for local in sorted(topo.produced):
        topic = observed.get(local)
        if topic is None or topic.owner in (None, me) or local in shared:
            continue
        problems.append(
            f"topic {topo.topic(local)} belongs to Pipeline {topic.owner}; writing into another "
            "pipeline's topic is refused: list it in spec.sharedOutputs if that is intended, or "
            "publish to a topic of your own (outputs, delivery.deadLetterTopic)"
        )
    return problems


def starts_earliest(
    position: InitialPosition | None, topic: str, me: str, observed: Mapping[str, ObservedTopic]
) -> bool:
    """Where a new subscription on local ``topic`` starts: as the stage says, else at the
    earliest message of a topic this Pipeline creates or owns, and at the latest of one that
    already existed (its history belongs to someone else and is not replayed)."""
    if position is not None:
        return position is InitialPosition.EARLIEST
    existing = observed.get(topic)
    return existing is None or existing.owner == me


def owned_topics(topo: Topology, me: str, observed: Mapping[str, ObservedTopic]) -> list[str]:
    """Fully qualified topics of ``topo`` that carry this Pipeline's owner property."""
    return [topo.topic(local) for local, t in sorted(observed.items()) if t.owner == me]


def merged(*groups: Iterable[str]) -> list[str]:
    """Sorted union of ``groups``."""
    return sorted({item for group in groups for item in group if item})
