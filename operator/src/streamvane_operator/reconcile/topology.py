"""Make Pulsar match a Topology: idempotent, reads before it writes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from streamvane_operator.pulsar.admin import PulsarAdmin, Retention, SubscriptionStats, TopicName
from streamvane_operator.pulsar.errors import PulsarNotFound
from streamvane_operator.render.topology import STATE_COMPACTION_THRESHOLD_BYTES, Topology

STATE_RETENTION = Retention(-1, -1)
"""State topics keep everything: compaction, not retention, bounds them."""


@dataclass(frozen=True)
class TopologyChanges:
    created: list[str] = field(default_factory=list)
    """What was created or changed, for events."""
    notes: list[str] = field(default_factory=list)
    """Differences that cannot be fixed in place, for warning events."""


def ensure_topology(admin: PulsarAdmin, topo: Topology) -> TopologyChanges:
    """Create what is missing: tenant, namespace, topics, retention, then subscriptions.

    Subscriptions start at the earliest message and this runs before any worker exists, so
    whatever producers publish from now on is kept for the stages.
    """
    changes = TopologyChanges()
    created, notes = changes.created, changes.notes
    if topo.tenant not in admin.tenants():
        admin.create_tenant(topo.tenant, admin.clusters())
        created.append(f"tenant {topo.tenant}")
    if f"{topo.tenant}/{topo.namespace}" not in admin.namespaces(topo.tenant):
        admin.create_namespace(topo.tenant, topo.namespace)
        created.append(f"namespace {topo.tenant}/{topo.namespace}")
    existing = admin.topics(topo.tenant, topo.namespace)
    retention = Retention(topo.retention_minutes, topo.retention_size_mb)
    for topic in topo.topics:
        wanted = STATE_RETENTION if topic.state else retention
        name = TopicName(topo.tenant, topo.namespace, topic.name)
        have = existing.get(topic.name)
        if have is None:
            admin.create_topic(name, topic.partitions)
            created.append(f"topic {name}")
        elif have == 0 and topic.partitions > 0:
            notes.append(
                f"topic {name} already exists without partitions; "
                f"it is used as is ({topic.partitions} partitions requested)"
            )
        elif topic.partitions > have:
            admin.update_partitions(name, topic.partitions)
            created.append(f"{topic.partitions - have} partitions of {name}")
        elif topic.partitions < have:
            notes.append(
                f"topic {name} has {have} partitions; Pulsar cannot reduce them to "
                f"{topic.partitions}"
            )
        # Written only on change: each write is a message on Pulsar's policy system topic.
        if admin.retention(name) != wanted:
            admin.set_retention(name, wanted)
        if topic.state and admin.compaction_threshold(name) != STATE_COMPACTION_THRESHOLD_BYTES:
            admin.set_compaction_threshold(name, STATE_COMPACTION_THRESHOLD_BYTES)
            created.append(f"compaction of {name}")
    for sub in topo.subscriptions:
        name = TopicName(topo.tenant, topo.namespace, sub.topic)
        if sub.name not in admin.subscriptions(name):
            admin.create_subscription(name, sub.name)
            created.append(f"subscription {sub.name} on {name} (from the earliest message)")
    return changes


def subscription_stats(admin: PulsarAdmin, topo: Topology) -> dict[str, SubscriptionStats | None]:
    """Stage name -> stats of its subscription (None when topic or subscription is missing)."""
    existing = admin.topics(topo.tenant, topo.namespace)
    found: dict[str, SubscriptionStats | None] = {}
    for sub in topo.subscriptions:
        found[sub.stage] = None
        if sub.topic in existing:
            topic = TopicName(topo.tenant, topo.namespace, sub.topic)
            with contextlib.suppress(PulsarNotFound):
                found[sub.stage] = admin.subscription_stats(
                    topic, sub.name, existing[sub.topic] > 0
                )
    return found


def worker_connections(admin: PulsarAdmin, topo: Topology) -> int:
    """Consumers on the stage subscriptions plus producers on the topics workers publish to.

    Zero means every worker has stopped; deleting topics earlier lets a draining worker's
    client re-create them (brokers auto-create topics by default)."""
    existing = admin.topics(topo.tenant, topo.namespace)
    consumers = sum(s.consumers for s in subscription_stats(admin, topo).values() if s)
    producers = 0
    for local in sorted(topo.produced & existing.keys()):
        with contextlib.suppress(PulsarNotFound):
            topic = TopicName(topo.tenant, topo.namespace, local)
            producers += admin.publishers(topic, existing[local] > 0)
    return consumers + producers


def delete_topology(admin: PulsarAdmin, topo: Topology) -> list[str]:
    """Delete the pipeline's topics (and with them their subscriptions); returns their names."""
    existing = admin.topics(topo.tenant, topo.namespace)
    deleted = []
    for topic in topo.topics:
        if topic.name in existing:
            name = TopicName(topo.tenant, topo.namespace, topic.name)
            admin.delete_topic(name, partitioned=existing[topic.name] > 0)
            deleted.append(str(name))
    return deleted


def retire_subscriptions(
    admin: PulsarAdmin, subscriptions: Iterable[str]
) -> tuple[list[str], list[str]]:
    """Delete subscriptions (``persistent://tenant/namespace/topic#name``) that no stage reads
    any more. Returns (deleted, pending); pending ones still have consumers (draining workers)."""
    deleted: list[str] = []
    pending: list[str] = []
    for subscription in subscriptions:
        topic, _, name = subscription.partition("#")
        done = admin.delete_subscription(TopicName.parse(topic), name)
        (deleted if done else pending).append(subscription)
    return deleted, pending
