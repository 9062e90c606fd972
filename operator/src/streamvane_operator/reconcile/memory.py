"""What the operator remembers between reconciles, so that a resync of an unchanged Pipeline
costs next to nothing: no Kubernetes read, and of Pulsar only one shared snapshot.

- A **snapshot** of the broker's topics (``broker-stats/topics``: every loaded topic with its
  subscriptions, backlogs and rates) is read at most once per ``snapshot_ttl_s`` per admin
  client, for all Pipelines together. It shows a topic or stage subscription deleted behind
  the operator's back, and the backlogs that the status reports.
- **Pulsar checked**: the topology a full check (``ensure_topology``) last found in order,
  and when. Until ``pulsar_recheck_s`` passes or the topology changes, a reconcile trusts the
  snapshot instead of reading every topic's properties and policies again.
- **Settled**: the last full reconcile without a problem, per Pipeline. A resync of the same
  spec whose snapshot shows the same backlogs, within ``full_resync_s`` of it, has nothing to
  do: the watches report what changes in Kubernetes (Deployments, pods, backends).

A broker that does not serve the snapshot (a token without the super-user role), or topics
it has not loaded (another broker's, or unloaded since a restart), fall back to the per-topic
reads: slower, never wrong.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamvane_operator.pulsar.admin import PARTITION_MARKER, PulsarAdmin, SubscriptionStats
from streamvane_operator.pulsar.errors import PulsarError
from streamvane_operator.render.topology import Topology

Snapshot = Mapping[str, "TopicSnapshot"]
"""Fully qualified topic name -> what the broker says about it."""


@dataclass(frozen=True)
class TopicSnapshot:
    rate_in: float = 0.0
    subscriptions: Mapping[str, SubscriptionStats] = field(default_factory=dict)


def parse_broker_topics(data: Mapping[str, Any]) -> dict[str, TopicSnapshot]:
    """``broker-stats/topics`` ({namespace: {bundle: {"persistent": {topic: stats}}}}) by
    topic; the partitions of a partitioned topic add up under its own name."""
    rates: dict[str, float] = {}
    subs: dict[str, dict[str, SubscriptionStats]] = {}
    for bundles in data.values():
        for bundle in bundles.values():
            for name, stats in (bundle.get("persistent") or {}).items():
                topic = name.split(PARTITION_MARKER)[0]
                rates[topic] = rates.get(topic, 0.0) + float(stats.get("msgRateIn") or 0.0)
                found = subs.setdefault(topic, {})
                for sub, s in (stats.get("subscriptions") or {}).items():
                    before = found.get(sub, SubscriptionStats(0, 0))
                    found[sub] = SubscriptionStats(
                        backlog=before.backlog + int(s.get("msgBacklog") or 0),
                        consumers=before.consumers + len(s.get("consumers") or []),
                        rate_out=before.rate_out + float(s.get("msgRateOut") or 0.0),
                    )
    return {topic: TopicSnapshot(rates[topic], subs[topic]) for topic in rates}


def stage_stats(topo: Topology, snapshot: Snapshot) -> dict[str, SubscriptionStats] | None:
    """Stage -> stats of its subscription, when the snapshot shows every topic and stage
    subscription of ``topo``; None when something is missing from it (deleted, or not
    loaded): then the per-topic reads decide."""
    if any(topo.topic(t.name) not in snapshot for t in topo.topics):
        return None
    found: dict[str, SubscriptionStats] = {}
    for sub in topo.subscriptions:
        topic = snapshot[topo.topic(sub.topic)]
        stats = topic.subscriptions.get(sub.name)
        if stats is None:
            return None
        found[sub.stage] = SubscriptionStats(
            stats.backlog, stats.consumers, topic.rate_in, stats.rate_out
        )
    return found


def backlogs(stats: Mapping[str, SubscriptionStats | None]) -> dict[str, int | None]:
    """Stage -> backlog, as the status reports it."""
    return {stage: s.backlog if s else None for stage, s in stats.items()}


def spec_digest(raw_spec: Mapping[str, Any], generation: int) -> str:
    payload = json.dumps([generation, raw_spec], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class PulsarChecked:
    key: Hashable
    """What the full check was of: admin URL, topology, initial positions, shared outputs."""
    at: float


@dataclass(frozen=True)
class Settled:
    spec: str
    """``spec_digest`` of the spec and generation reconciled."""
    at: float
    admin: PulsarAdmin
    topo: Topology
    lag: Mapping[str, int | None]
    """Stage -> backlog as written to the status."""


def still_checked(
    checked: PulsarChecked | None, key: Hashable, now: float, recheck_s: float
) -> bool:
    return checked is not None and checked.key == key and now - checked.at < recheck_s


def still_settled(settled: Settled | None, spec: str, now: float, full_resync_s: float) -> bool:
    return settled is not None and settled.spec == spec and now - settled.at < full_resync_s


@dataclass
class ReconcileMemory:
    """Shared by every handler thread; one per operator process."""

    snapshot_ttl_s: float = 10.0
    pulsar_recheck_s: float = 3600.0
    full_resync_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _snapshots: dict[int, tuple[PulsarAdmin, float, dict[str, TopicSnapshot] | None]] = field(
        default_factory=dict
    )
    """id(admin client) -> (the client, kept so that its id is not reused; read at; topics)."""
    _checked: dict[str, PulsarChecked] = field(default_factory=dict)
    _settled: dict[str, Settled] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reading: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self, admin: PulsarAdmin) -> dict[str, TopicSnapshot] | None:
        """The broker's topics as read at most ``snapshot_ttl_s`` ago; None when the broker
        does not serve them (remembered as long)."""
        with self._reading:  # one read at a time: the others wait for it, then share it
            cached = self._snapshots.get(id(admin))
            if cached is not None and self.clock() - cached[1] < self.snapshot_ttl_s:
                return cached[2]
            try:
                found: dict[str, TopicSnapshot] | None = parse_broker_topics(
                    admin.broker_topic_stats()
                )
            except PulsarError:
                found = None
            self._snapshots[id(admin)] = (admin, self.clock(), found)
            return found

    def known_stats(
        self, uid: str, key: Hashable, admin: PulsarAdmin, topo: Topology
    ) -> dict[str, SubscriptionStats] | None:
        """Stage stats from the snapshot when the last full check of ``key`` is recent and
        the snapshot shows the whole topology; None: run the full check."""
        with self._lock:
            checked = self._checked.get(uid)
        if not still_checked(checked, key, self.clock(), self.pulsar_recheck_s):
            return None
        snapshot = self.snapshot(admin)
        return stage_stats(topo, snapshot) if snapshot is not None else None

    def checked(self, uid: str, key: Hashable) -> None:
        with self._lock:
            self._checked[uid] = PulsarChecked(key, self.clock())

    def settled(
        self, uid: str, spec: str, admin: PulsarAdmin, topo: Topology, lag: Mapping[str, int | None]
    ) -> None:
        with self._lock:
            self._settled[uid] = Settled(spec, self.clock(), admin, topo, dict(lag))

    def unsettle(self, uid: str) -> None:
        with self._lock:
            self._settled.pop(uid, None)

    def nothing_to_do(self, uid: str, spec: str) -> bool:
        """A resync of ``spec`` finds what the last full reconcile left: same spec, recent,
        and the snapshot shows the whole topology with the backlogs in the status."""
        with self._lock:
            settled = self._settled.get(uid)
        if settled is None or not still_settled(settled, spec, self.clock(), self.full_resync_s):
            return False
        snapshot = self.snapshot(settled.admin)
        stats = stage_stats(settled.topo, snapshot) if snapshot is not None else None
        return stats is not None and backlogs(stats) == settled.lag

    def forget(self, uid: str) -> None:
        with self._lock:
            self._checked.pop(uid, None)
            self._settled.pop(uid, None)
