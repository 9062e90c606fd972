"""Make Pulsar match a Topology: idempotent, reads before it writes."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from streamvane_operator.api.pipeline import InitialPosition
from streamvane_operator.metrics import StageLoad
from streamvane_operator.pulsar.admin import PulsarAdmin, Retention, SubscriptionStats, TopicName
from streamvane_operator.pulsar.errors import PulsarNotFound
from streamvane_operator.reconcile.ownership import (
    OWNER_PROPERTY,
    ObservedTopic,
    foreign_outputs,
    owned_topics,
    starts_earliest,
)
from streamvane_operator.render.topology import STATE_COMPACTION_THRESHOLD_BYTES, Topology

STATE_RETENTION = Retention(-1, -1)
"""State topics keep everything: compaction, not retention, bounds them."""


class TopicConflict(Exception):
    """The topology would write into topics another Pipeline owns; nothing was changed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class TopologyChanges:
    created: list[str] = field(default_factory=list)
    """What was created or changed, for events."""
    notes: list[str] = field(default_factory=list)
    """Differences that cannot be fixed in place, for warning events."""
    owned_topics: list[str] = field(default_factory=list)
    """Topics of the topology this Pipeline created (it may delete them)."""
    created_subscriptions: list[str] = field(default_factory=list)
    """Subscriptions created now, as ``persistent://tenant/namespace/topic#name``."""
    new_topics: set[str] = field(default_factory=set)
    """Local names of the topics created now: nothing set on them yet to read back."""


def observe_topics(admin: PulsarAdmin, topo: Topology) -> dict[str, ObservedTopic]:
    """The topology's topics that exist (local name -> partitions and owner), in a namespace
    that exists."""
    existing = admin.topics(topo.tenant, topo.namespace)
    observed = {}
    for topic in topo.topics:
        if topic.name in existing:
            name = TopicName(topo.tenant, topo.namespace, topic.name)
            owner = admin.topic_properties(name).get(OWNER_PROPERTY)
            observed[topic.name] = ObservedTopic(existing[topic.name], owner)
    return observed


def ensure_topology(
    admin: PulsarAdmin,
    topo: Topology,
    me: str,
    positions: dict[str, InitialPosition | None],
    shared_outputs: frozenset[str],
) -> TopologyChanges:
    """Check ownership, then create what is missing: tenant, namespace, topics (owned by
    ``me``), retention, de-duplication of effectively-once outputs, then subscriptions.

    Raises TopicConflict before writing anything when a stage would publish into another
    Pipeline's topic. New subscriptions start where ``positions`` (stage -> input
    initialPosition) says, by default at the earliest message of the Pipeline's own topics:
    this runs before any worker exists, so whatever producers publish from now on is kept.
    """
    has_tenant = topo.tenant in admin.tenants()
    has_namespace = has_tenant and f"{topo.tenant}/{topo.namespace}" in admin.namespaces(
        topo.tenant
    )
    observed = observe_topics(admin, topo) if has_namespace else {}
    conflicts = foreign_outputs(topo, me, observed, shared_outputs)
    if conflicts:
        raise TopicConflict(conflicts)
    changes = TopologyChanges(owned_topics=owned_topics(topo, me, observed))
    created, notes = changes.created, changes.notes
    if not has_tenant:
        admin.create_tenant(topo.tenant, admin.clusters())
        created.append(f"tenant {topo.tenant}")
    if not has_namespace:
        admin.create_namespace(topo.tenant, topo.namespace)
        created.append(f"namespace {topo.tenant}/{topo.namespace}")
    retention = Retention(topo.retention_minutes, topo.retention_size_mb)
    fresh = changes.new_topics
    for topic in topo.topics:
        wanted = STATE_RETENTION if topic.state else retention
        name = TopicName(topo.tenant, topo.namespace, topic.name)
        seen = observed.get(topic.name)
        have = seen.partitions if seen else None
        if have is None:
            if admin.create_topic(name, topic.partitions, {OWNER_PROPERTY: me}):
                created.append(f"topic {name}")
                changes.owned_topics.append(str(name))
                fresh.add(topic.name)
            else:
                notes.append(f"topic {name} appeared meanwhile; it is used as is, not owned")
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
        new = topic.name in fresh
        if (None if new else admin.retention(name)) != wanted:
            admin.set_retention(name, wanted)
        if topic.state and (
            new or admin.compaction_threshold(name) != STATE_COMPACTION_THRESHOLD_BYTES
        ):
            admin.set_compaction_threshold(name, STATE_COMPACTION_THRESHOLD_BYTES)
            created.append(f"compaction of {name}")
        # Before any worker writes: an output written without it is not de-duplicated. It
        # stays on if the stage goes back to AtLeastOnce (harmless: producers of other
        # names are unaffected), and it applies to a shared output as well.
        if topic.name in topo.deduplicated and (new or admin.deduplication(name) is not True):
            admin.set_deduplication(name, True)
            created.append(f"de-duplication of {name}")
    for sub in topo.all_subscriptions:
        name = TopicName(topo.tenant, topo.namespace, sub.topic)
        if sub.topic in fresh or sub.name not in admin.subscriptions(name):
            earliest = starts_earliest(positions.get(sub.stage), sub.topic, me, observed)
            admin.create_subscription(name, sub.name, earliest)
            changes.created_subscriptions.append(f"{name}#{sub.name}")
            start = "the earliest message" if earliest else "the latest message"
            created.append(f"subscription {sub.name} on {name} (from {start})")
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


def stage_load(stats: SubscriptionStats, now: datetime) -> StageLoad:
    """A stage's load for the metrics. Its lag is the age of the oldest unacknowledged
    message; when Pulsar gives no time for it, the time the backlog takes to drain at the
    current dispatch rate (NaN while nothing is dispatched)."""
    if stats.backlog == 0:
        lag = 0.0
    elif stats.earliest_backlog_ms is not None:
        lag = max(now.timestamp() - stats.earliest_backlog_ms / 1000, 0.0)
    elif stats.rate_out > 0:
        lag = stats.backlog / stats.rate_out
    else:
        lag = math.nan
    return StageLoad(stats.backlog, stats.rate_in, stats.rate_out, lag)


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


@dataclass(frozen=True)
class Cleanup:
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    """Created topics left in place, each with the reason (for a warning event)."""


def delete_created(
    admin: PulsarAdmin, me: str, topics: Iterable[str], subscriptions: Iterable[str]
) -> Cleanup:
    """Delete the subscriptions, then the topics, that this Pipeline (``me``) created. A topic
    is kept when its owner property no longer names ``me`` or when subscriptions of others
    read it (another pipeline's input); topics and subscriptions already gone count as done.
    """
    cleanup = Cleanup()
    ours = set(subscriptions)
    for subscription in sorted(ours):
        on, _, name = subscription.partition("#")
        if admin.delete_subscription(TopicName.parse(on), name):
            cleanup.deleted.append(f"subscription {subscription}")
        else:
            cleanup.kept.append(f"subscription {subscription}: consumers are still connected")
    listings: dict[tuple[str, str], dict[str, int]] = {}
    for qualified in sorted(set(topics)):
        topic = TopicName.parse(qualified)
        key = (topic.tenant, topic.namespace)
        if key not in listings:
            try:
                listings[key] = admin.topics(*key)
            except PulsarNotFound:
                listings[key] = {}
        if topic.local not in listings[key]:
            continue
        owner = admin.topic_properties(topic).get(OWNER_PROPERTY)
        if owner != me:
            cleanup.kept.append(f"topic {topic}: it belongs to {owner or 'nobody'} now")
            continue
        readers = [s for s in admin.subscriptions(topic) if f"{topic}#{s}" not in ours]
        if readers:
            cleanup.kept.append(f"topic {topic}: still read by subscriptions {', '.join(readers)}")
            continue
        admin.delete_topic(topic, partitioned=listings[key][topic.local] > 0)
        cleanup.deleted.append(f"topic {topic}")
    return cleanup


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
