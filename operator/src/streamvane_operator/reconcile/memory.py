"""What the operator remembers between reconciles, so that a resync of an unchanged Pipeline
costs next to nothing: no Kubernetes read, and of Pulsar only one shared snapshot.

- Two reads shared by all Pipelines, each at most once per ``snapshot_ttl_s``: the live
  topic listing of each Pulsar namespace (one call: a topic deleted behind the operator's
  back is recreated at the next resync), and a **snapshot** of the broker's topics
  (``broker-stats/topics``, one call per admin client: every loaded topic's subscriptions,
  backlogs and rates, as the broker refreshes them every ``statsUpdateFrequencyInSecs``).
  The newest entries of each model-versions topic (``newest_payloads``, for the model-serving
  timer) are shared likewise, for ``announcements_ttl_s``.
- **Pulsar checked**: the topology a full check (``ensure_topology``) last found in order,
  and when. Until ``pulsar_recheck_s`` passes or the topology changes, a reconcile trusts the
  snapshot instead of reading every topic's properties and policies again.
- **Settled**: the last full reconcile without a problem, per Pipeline. A resync of the same
  spec whose snapshot shows the same backlogs, within ``full_resync_s`` of it, has nothing to
  do: the watches report what changes in Kubernetes (Deployments, pods, backends). One that
  found the Pipeline not Ready yet, only waiting for its workers (which the Deployment and
  pod watches report), is trusted for ``waiting_s``: while hundreds of Pipelines are created
  at once, a resync would redo each one's full reconcile for nothing.

A broker that does not serve the snapshot (a token without the super-user role), or
subscriptions it does not show (another broker's topics, topics not loaded or too new), fall
back to the per-topic stats: slower, never wrong. One Pulsar namespace per Pipeline costs one
listing per resync each.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from streamvane_operator.pulsar.admin import (
    PARTITION_MARKER,
    PulsarAdmin,
    SubscriptionStats,
    TopicName,
)
from streamvane_operator.pulsar.errors import PulsarError, PulsarNotFound
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


def stage_stats(
    topo: Topology, listed: Set[str], snapshot: Snapshot
) -> dict[str, SubscriptionStats | None] | None:
    """Stage -> stats of its subscription as the snapshot shows it (None: not in it, the
    per-topic stats decide); None when a topic of ``topo`` is missing from the namespace's
    live listing ``listed``: then the full check recreates it."""
    if any(t.name not in listed for t in topo.topics):
        return None
    found: dict[str, SubscriptionStats | None] = {}
    for sub in topo.subscriptions:
        topic = snapshot.get(topo.topic(sub.topic))
        stats = topic.subscriptions.get(sub.name) if topic is not None else None
        found[sub.stage] = (
            SubscriptionStats(stats.backlog, stats.consumers, topic.rate_in, stats.rate_out)
            if topic is not None and stats is not None
            else None
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
    ready: bool = True
    """False: no problem, but its workers were not all ready yet."""


def still_checked(
    checked: PulsarChecked | None, key: Hashable, now: float, recheck_s: float
) -> bool:
    return checked is not None and checked.key == key and now - checked.at < recheck_s


def still_settled(
    settled: Settled | None, spec: str, now: float, full_resync_s: float, waiting_s: float = 0.0
) -> bool:
    trusted_s = full_resync_s if settled is not None and settled.ready else waiting_s
    return settled is not None and settled.spec == spec and now - settled.at < trusted_s


@dataclass
class ReconcileMemory:
    """Shared by every handler thread; one per operator process."""

    snapshot_ttl_s: float = 10.0
    announcements_ttl_s: float = 10.0
    """How long a read of a model-versions topic is shared: shorter than the model-serving
    timer's interval, so that each of its ticks reads anew."""
    pulsar_recheck_s: float = 3600.0
    full_resync_s: float = 300.0
    waiting_s: float = 0.0
    """How long a resync trusts a full reconcile that only waits for its workers."""
    clock: Callable[[], float] = time.monotonic
    _reads: dict[tuple[int, str], tuple[PulsarAdmin, float, Any]] = field(default_factory=dict)
    """(id(admin client), what) -> (the client, kept so that its id is not reused; read at;
    what was read)."""
    _checked: dict[str, PulsarChecked] = field(default_factory=dict)
    _settled: dict[str, Settled] = field(default_factory=dict)
    _reconciled: set[str] = field(default_factory=set)
    """Pipelines fully reconciled by this process (whatever came of it)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reading: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self, admin: PulsarAdmin) -> dict[str, TopicSnapshot]:
        """The broker's topics as read at most ``snapshot_ttl_s`` ago; empty when the broker
        does not serve them."""

        def read() -> dict[str, TopicSnapshot]:
            try:
                return parse_broker_topics(admin.broker_topic_stats())
            except PulsarError:
                return {}

        found: dict[str, TopicSnapshot] = self._shared(
            admin, "broker-stats", read, self.snapshot_ttl_s
        )
        return found

    def listed(self, admin: PulsarAdmin, tenant: str, namespace: str) -> set[str]:
        """The namespace's topics as listed at most ``snapshot_ttl_s`` ago (empty while it
        does not exist)."""

        def read() -> set[str]:
            try:
                return admin.topic_names(tenant, namespace)
            except PulsarNotFound:
                return set()

        found: set[str] = self._shared(admin, f"{tenant}/{namespace}", read, self.snapshot_ttl_s)
        return found

    def newest_payloads(
        self,
        admin: PulsarAdmin,
        topic: TopicName,
        entries: int,
        enough: Callable[[Sequence[bytes]], bool],
        what: str,
    ) -> list[bytes]:
        """The newest messages of ``topic`` (``PulsarAdmin.newest_payloads``) as read at most
        ``announcements_ttl_s`` ago for ``what`` (what ``enough`` looks for): Pipelines
        following one model on one model-versions topic share a read."""
        found: list[bytes] = self._shared(
            admin,
            _newest(topic, what),
            lambda: admin.newest_payloads(topic, entries, enough),
            self.announcements_ttl_s,
        )
        return found

    def last_newest_payloads(
        self, admin: PulsarAdmin, topic: TopicName, what: str
    ) -> list[bytes] | None:
        """What the last ``newest_payloads`` read that succeeded returned, however old; None
        before one has."""
        with self._reading:
            cached = self._reads.get((id(admin), _newest(topic, what)))
        return None if cached is None else list(cached[2])

    def _shared(self, admin: PulsarAdmin, what: str, read: Callable[[], Any], ttl_s: float) -> Any:
        """``read()``, or what it returned less than ``ttl_s`` ago."""
        # One read at a time: the others wait for it, then share it.
        with self._reading:
            cached = self._reads.get((id(admin), what))
            if cached is not None and self.clock() - cached[1] < ttl_s:
                return cached[2]
            found = read()
            self._reads[(id(admin), what)] = (admin, self.clock(), found)
            return found

    def observed(self, admin: PulsarAdmin, topo: Topology) -> dict[str, SubscriptionStats] | None:
        """Stage stats when Pulsar shows the whole topology (snapshot, else per-topic stats);
        None when a topic or stage subscription is missing."""
        stats = stage_stats(
            topo, self.listed(admin, topo.tenant, topo.namespace), self.snapshot(admin)
        )
        if stats is None:
            return None
        found: dict[str, SubscriptionStats] = {}
        by_stage = {sub.stage: sub for sub in topo.subscriptions}
        partitions = {t.name: t.partitions for t in topo.topics}
        for stage, seen in stats.items():
            sub = by_stage[stage]
            topic = TopicName(topo.tenant, topo.namespace, sub.topic)
            read = seen or admin.subscription_stats(topic, sub.name, partitions[sub.topic] > 0)
            if read is None:
                return None
            found[stage] = read
        return found

    def known_stats(
        self, uid: str, key: Hashable, admin: PulsarAdmin, topo: Topology
    ) -> dict[str, SubscriptionStats] | None:
        """Stage stats when the last full check of ``key`` is recent and Pulsar shows the
        whole topology; None: run the full check."""
        with self._lock:
            checked = self._checked.get(uid)
        if not still_checked(checked, key, self.clock(), self.pulsar_recheck_s):
            return None
        try:
            return self.observed(admin, topo)
        except PulsarNotFound:
            return None  # deleted meanwhile

    def checked(self, uid: str, key: Hashable) -> None:
        with self._lock:
            self._checked[uid] = PulsarChecked(key, self.clock())

    def settled(
        self,
        uid: str,
        spec: str,
        admin: PulsarAdmin,
        topo: Topology,
        lag: Mapping[str, int | None],
        *,
        ready: bool = True,
    ) -> None:
        with self._lock:
            self._settled[uid] = Settled(spec, self.clock(), admin, topo, dict(lag), ready)
            self._reconciled.add(uid)

    def unsettle(self, uid: str) -> None:
        with self._lock:
            self._settled.pop(uid, None)
            self._reconciled.add(uid)

    def not_reconciled_yet(self, uid: str) -> bool:
        """No full reconcile of this Pipeline has finished in this process: its create or
        resume handler (which kopf runs, and retries, for every Pipeline) is still queued.
        A resync meanwhile would only do the same work twice."""
        with self._lock:
            return uid not in self._reconciled

    def nothing_to_do(self, uid: str, spec: str, *, ready: bool) -> bool:
        """A resync of ``spec`` finds what the last full reconcile left: same spec, recent,
        the readiness it found (``ready``: what the status says now), and Pulsar shows the
        whole topology with the backlogs in the status. Raises what the admin client raises
        (the reconcile then reports it)."""
        with self._lock:
            settled = self._settled.get(uid)
        if not still_settled(settled, spec, self.clock(), self.full_resync_s, self.waiting_s):
            return False
        assert settled is not None
        if settled.ready != ready:
            return False
        try:
            stats = self.observed(settled.admin, settled.topo)
        except PulsarError:
            return False  # the reconcile finds out and says what
        return stats is not None and backlogs(stats) == settled.lag

    def forget(self, uid: str) -> None:
        with self._lock:
            self._checked.pop(uid, None)
            self._settled.pop(uid, None)
            self._reconciled.discard(uid)


def _newest(topic: TopicName, what: str) -> str:
    """The shared read of ``newest_payloads`` for ``what`` on ``topic``."""
    return f"newest:{topic}:{what}"
