"""What reconciles remember: a resync of an unchanged Pipeline reads one shared broker
snapshot and nothing else, and still sees what changed in Pulsar."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from streamvane_operator.api.pipeline import PipelineSpec, PipelineStatus
from streamvane_operator.pulsar.admin import SubscriptionStats, TopicName
from streamvane_operator.reconcile import pipeline
from streamvane_operator.reconcile.common import Deps, Outcome
from streamvane_operator.reconcile.memory import (
    PulsarChecked,
    ReconcileMemory,
    TopicSnapshot,
    parse_broker_topics,
    stage_stats,
    still_checked,
)
from streamvane_operator.render.labels import Owner
from streamvane_operator.render.topology import topology

from .test_reconcile_pipeline import (
    OWNER,
    TOPIC,
    World,
    embed_stage,
    pipeline_spec,
    relay_stage,
    status_dump,
)

SNAPSHOT = "GET /admin/v2/broker-stats/topics"
LISTING = "GET /admin/v2/persistent/streamvane/content"
SHARED_READS = [LISTING, SNAPSHOT]
"""What a resync of an unchanged Pipeline reads: both shared by every Pipeline."""


def resync_pipeline(
    deps: Deps, owner: Owner, spec: dict[str, Any], generation: int, status: Any
) -> Outcome[PipelineStatus] | None:
    """What the resync timer does (without the handler's lock): None when it skips."""
    if not pipeline.resync_needed(deps, owner, spec, generation, status):
        return None
    return pipeline.reconcile_pipeline(deps, owner, spec, generation, status)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def world(clock: Clock) -> World:
    world = World()
    memory = ReconcileMemory(snapshot_ttl_s=5, pulsar_recheck_s=600, full_resync_s=120, clock=clock)
    world.deps = dataclasses.replace(world.deps, memory=memory)
    return world


def test_parse_broker_topics_adds_up_partitions_under_the_topic_name() -> None:
    partition = {
        "msgRateIn": 2.0,
        "subscriptions": {"s": {"msgBacklog": 3, "msgRateOut": 1.5, "consumers": [{}]}},
    }
    data = {
        "t/ns": {
            "0x0_0x8": {"persistent": {"persistent://t/ns/a-partition-0": partition}},
            "0x8_0xf": {
                "persistent": {
                    "persistent://t/ns/a-partition-1": partition,
                    "persistent://t/ns/b": {"msgRateIn": 0.0, "subscriptions": {}},
                }
            },
        }
    }

    found = parse_broker_topics(data)

    assert found == {
        "persistent://t/ns/a": TopicSnapshot(4.0, {"s": SubscriptionStats(6, 2, rate_out=3.0)}),
        "persistent://t/ns/b": TopicSnapshot(0.0, {}),
    }


def test_stage_stats_need_every_topic_listed_and_take_what_the_snapshot_shows() -> None:
    world = World()
    world.reconcile(pipeline_spec(embed_stage(), relay_stage()))
    spec = PipelineSpec.model_validate(pipeline_spec(embed_stage(), relay_stage()))
    topo = topology(OWNER.namespace, OWNER.name, spec)
    admin = world.pulsar.admin()
    listed = admin.topic_names("streamvane", "content")
    snapshot = parse_broker_topics(admin.broker_topic_stats())

    assert stage_stats(topo, listed, snapshot) == {
        "embed": SubscriptionStats(0, 0),
        "relay": SubscriptionStats(0, 0),
    }
    assert stage_stats(topo, listed - {"out"}, snapshot) is None
    # Not (yet) in the snapshot: the per-topic stats decide.
    unsubscribed = {**snapshot, TOPIC.format("items"): TopicSnapshot(0.0, {})}
    assert (stage_stats(topo, listed, unsubscribed) or {})["embed"] is None
    assert stage_stats(topo, listed, {}) == {"embed": None, "relay": None}


def test_a_full_check_is_trusted_until_recheck_passes_or_the_topology_changes() -> None:
    checked = PulsarChecked(("url", "topology"), at=100.0)

    assert still_checked(checked, ("url", "topology"), 699.0, 600)
    assert not still_checked(checked, ("url", "topology"), 700.0, 600)
    assert not still_checked(checked, ("url", "other"), 101.0, 600)
    assert not still_checked(None, ("url", "topology"), 101.0, 600)


def settle(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reconcile, mark the workers ready, reconcile again: Ready, as stored."""
    spec = pipeline_spec(embed_stage(), relay_stage())
    world.reconcile(spec)
    world.mark_ready()
    outcome = world.reconcile(spec)
    assert outcome.problem is None
    return spec, status_dump(outcome)


def test_second_reconcile_reads_only_the_snapshot_when_pulsar_was_checked(world: World) -> None:
    spec = pipeline_spec(embed_stage(), relay_stage())
    world.reconcile(spec)
    calls = len(world.pulsar.calls)

    outcome = world.reconcile(spec)

    assert outcome.problem is None
    assert world.pulsar.calls[calls:] == SHARED_READS


def test_resync_of_a_ready_unchanged_pipeline_does_nothing(world: World, clock: Clock) -> None:
    spec, status = settle(world)
    calls = len(world.pulsar.calls)
    world.kube.unavailable = True  # any Kubernetes call would fail
    clock.now += 10  # a fresh snapshot

    assert resync_pipeline(world.deps, OWNER, spec, 1, status) is None
    assert world.pulsar.calls[calls:] == SHARED_READS


def test_resync_reconciles_when_a_backlog_changed(world: World, clock: Clock) -> None:
    spec, status = settle(world)
    world.pulsar.backlog[(TOPIC.format("items"), "media.cu-embed")] = 7
    clock.now += 10

    outcome = resync_pipeline(world.deps, OWNER, spec, 1, status)

    assert outcome is not None
    assert {s.name: s.backlog for s in outcome.status.stages}["embed"] == 7


def test_resync_recreates_a_topic_deleted_behind_the_operators_back(
    world: World, clock: Clock
) -> None:
    spec, status = settle(world)
    out = TOPIC.format("out")
    del world.pulsar.topics[out]
    clock.now += 10

    outcome = resync_pipeline(world.deps, OWNER, spec, 1, status)

    assert outcome is not None and outcome.problem is None
    assert out in world.pulsar.topics
    assert "PUT /admin/v2/persistent/streamvane/content/out" in world.pulsar.calls


def test_resync_reconciles_a_pipeline_whose_status_was_written_over(
    world: World, clock: Clock
) -> None:
    # The last reconcile found it Ready; an older reconcile's status (workers not ready yet)
    # landed after it: the next resync puts it right instead of trusting its memory.
    spec, status = settle(world)
    assert pipeline.shows_ready(status)
    stale = {**status, "conditions": [{**c, "status": "False"} for c in status["conditions"]]}
    clock.now += 10

    outcome = resync_pipeline(world.deps, OWNER, spec, 1, stale)

    assert outcome is not None and pipeline.is_ready(outcome.status)


def test_resync_reconciles_again_after_the_full_resync_interval(world: World, clock: Clock) -> None:
    spec, status = settle(world)
    clock.now += 121

    assert resync_pipeline(world.deps, OWNER, spec, 1, status) is not None


def test_resync_reconciles_an_edited_spec(world: World) -> None:
    spec, status = settle(world)
    spec["stages"][0]["batching"] = {"maxBatchSize": 4}

    assert resync_pipeline(world.deps, OWNER, spec, 2, status) is not None


def test_resync_reads_each_subscriptions_stats_when_the_broker_refuses_the_snapshot(
    world: World, clock: Clock
) -> None:
    world.pulsar.broker_stats = False
    spec, status = settle(world)
    calls = len(world.pulsar.calls)
    clock.now += 10

    assert resync_pipeline(world.deps, OWNER, spec, 1, status) is None
    reads = world.pulsar.calls[calls:]
    assert reads[:2] == SHARED_READS
    assert sorted(reads[2:]) == [
        "GET /admin/v2/persistent/streamvane/content/embedded/stats",
        "GET /admin/v2/persistent/streamvane/content/items/stats",
    ]


def test_resync_recreates_a_subscription_deleted_behind_the_operators_back(
    world: World, clock: Clock
) -> None:
    world.pulsar.broker_stats = False  # the per-topic stats show the deletion at once
    spec, status = settle(world)
    items = TOPIC.format("items")
    world.pulsar.subscriptions[items].clear()
    clock.now += 10

    outcome = resync_pipeline(world.deps, OWNER, spec, 1, status)

    assert outcome is not None and outcome.problem is None
    assert world.pulsar.subscriptions[items] == {"media.cu-embed"}


def waiting_world(clock: Clock) -> World:
    world = World()
    memory = ReconcileMemory(
        snapshot_ttl_s=5, pulsar_recheck_s=600, full_resync_s=120, waiting_s=30, clock=clock
    )
    world.deps = dataclasses.replace(world.deps, memory=memory)
    return world


def test_resync_of_a_pipeline_waiting_for_its_workers_waits_one_period(clock: Clock) -> None:
    world = waiting_world(clock)
    spec = pipeline_spec(embed_stage(), relay_stage())
    status = status_dump(world.reconcile(spec))  # Deployments written, none ready yet
    clock.now += 10

    assert resync_pipeline(world.deps, OWNER, spec, 1, status) is None

    clock.now += 21  # past waiting_s: reconciled again, whatever the watches said
    assert resync_pipeline(world.deps, OWNER, spec, 1, status) is not None


def test_resync_of_a_pipeline_with_a_problem_is_never_skipped(clock: Clock) -> None:
    world = waiting_world(clock)
    spec = pipeline_spec(embed_stage(), relay_stage())
    world.pulsar.unavailable = True
    outcome = world.reconcile(spec)
    assert outcome.problem is not None
    world.pulsar.unavailable = False
    clock.now += 10

    assert resync_pipeline(world.deps, OWNER, spec, 1, status_dump(outcome)) is not None


def test_resync_waits_for_the_first_full_reconcile_of_its_pipeline(clock: Clock) -> None:
    world = waiting_world(clock)
    spec = pipeline_spec(embed_stage(), relay_stage())
    calls = len(world.pulsar.calls)

    assert resync_pipeline(world.deps, OWNER, spec, 1, None) is None  # create still queued
    assert world.pulsar.calls[calls:] == []


def test_newest_payloads_are_shared_for_announcements_ttl_s_whatever_the_snapshots_ttl(
    clock: Clock,
) -> None:
    world = World()
    topic = TopicName("streamvane", "content", "model-versions")
    world.pulsar.topics[str(topic)] = 0
    world.pulsar.entries[str(topic)] = [[b"v1"]]
    memory = ReconcileMemory(snapshot_ttl_s=60, announcements_ttl_s=5, clock=clock)
    admin = world.pulsar.admin("http://pulsar:8080")

    def read() -> list[bytes]:
        return memory.newest_payloads(admin, topic, 1, lambda _: False, "recs-ranker")

    assert read() == [b"v1"]
    world.pulsar.entries[str(topic)].append([b"v2"])
    clock.now += 4
    assert read() == [b"v1"], "shared within the TTL"
    clock.now += 1
    assert read() == [b"v2"]
