"""The admin client and ensure_topology against real Pulsar (standalone, 127.0.0.1:8080)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pulsar
import pytest

from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.pulsar.admin import PulsarAdmin, Retention, TopicName
from streamvane_operator.pulsar.errors import PulsarRejected, PulsarUnavailable
from streamvane_operator.reconcile.ownership import OWNER_PROPERTY
from streamvane_operator.reconcile.topology import (
    TopologyChanges,
    delete_created,
    ensure_topology,
    retire_subscriptions,
    stage_load,
    subscription_stats,
    worker_connections,
)
from streamvane_operator.render.topology import Topology
from streamvane_operator.render.topology import topology as render_topology

pytestmark = pytest.mark.integration


def spec(tenant: str, ns: str, partitions: int = 0, outputs: str = "") -> PipelineSpec:
    """in -> a -> mid -> b -> out; ``outputs`` prefixes what a and b publish to."""
    return PipelineSpec.model_validate(
        {
            "pulsar": {"tenant": tenant, "namespace": ns},
            "topics": {"partitions": partitions, "retentionMinutes": 60},
            "stages": [
                {
                    "name": "a",
                    "type": "passthrough",
                    "input": {"topic": "in"},
                    "outputs": [f"{outputs}mid"],
                },
                {
                    "name": "b",
                    "type": "passthrough",
                    "input": {"topic": "mid"},
                    "outputs": [f"{outputs}out"],
                },
            ],
        }
    )


ME = "k8s/p"


def topology(pipeline: str, spec: PipelineSpec) -> Topology:
    return render_topology("k8s", pipeline, spec)


def ensure(admin: PulsarAdmin, topo: Topology, me: str = ME) -> TopologyChanges:
    return ensure_topology(admin, topo, me, {}, frozenset())


def test_ensure_topology_creates_everything_once_when_run_twice(
    admin: PulsarAdmin, pulsar_namespace: tuple[str, str]
) -> None:
    tenant, ns = pulsar_namespace
    topo = topology("p", spec(tenant, ns))

    first = ensure(admin, topo)
    second = ensure(admin, topo)

    assert f"namespace {tenant}/{ns}" in first.created
    assert second.created == [] and second.notes == []
    assert admin.topics(tenant, ns) == {
        "in": 0, "mid": 0, "out": 0,
        "p-a-dlq": 0, "p-a-dlq-attempts": 0, "p-b-dlq": 0, "p-b-dlq-attempts": 0,
    }  # fmt: skip
    assert admin.subscriptions(TopicName(tenant, ns, "in")) == ["k8s.p-a"]
    assert admin.retention(TopicName(tenant, ns, "mid")) == Retention(60, -1)
    assert admin.topic_properties(TopicName(tenant, ns, "mid")) == {OWNER_PROPERTY: ME}
    assert len(first.owned_topics) == 7 and sorted(second.owned_topics) == sorted(
        first.owned_topics
    )


def test_ensure_topology_creates_partitioned_topics_when_policy_asks(
    admin: PulsarAdmin, pulsar_namespace: tuple[str, str]
) -> None:
    tenant, ns = pulsar_namespace

    ensure(admin, topology("p", spec(tenant, ns, partitions=3)))

    topics = admin.topics(tenant, ns)
    assert topics["in"] == 3 and topics["out"] == 3
    assert topics["p-a-dlq"] == 0
    assert admin.subscriptions(TopicName(tenant, ns, "in")) == ["k8s.p-a"]
    assert admin.topic_properties(TopicName(tenant, ns, "in")) == {OWNER_PROPERTY: ME}


def test_ensure_topology_deduplicates_outputs_of_an_effectively_once_stage_when_asked(
    stack: Any, admin: PulsarAdmin, pulsar_namespace: tuple[str, str]
) -> None:
    tenant, ns = pulsar_namespace
    raw = spec(tenant, ns, partitions=2).model_dump(by_alias=True, exclude_unset=True)
    raw["stages"][1] |= {
        "input": {"topic": "mid", "subscriptionType": "Failover"},
        "delivery": {"guarantee": "EffectivelyOnce"},
    }

    first = ensure(admin, topology("p", PipelineSpec.model_validate(raw)))
    second = ensure(admin, topology("p", PipelineSpec.model_validate(raw)))

    assert admin.deduplication(TopicName(tenant, ns, "out")) is True
    assert admin.deduplication(TopicName(tenant, ns, "mid")) is None
    assert f"de-duplication of persistent://{tenant}/{ns}/out" in first.created
    assert second.created == []
    # The policy on the partitioned topic reaches its partitions: a resend is dropped.
    client = pulsar.Client(stack.pulsar_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        producer = client.create_producer(
            f"persistent://{tenant}/{ns}/out", producer_name="eo-check", batching_enabled=False
        )
        deadline = time.monotonic() + 30
        while True:  # topic policies reach the broker asynchronously
            producer.send(b"first", sequence_id=7, partition_key="k")
            resent = producer.send(b"again", sequence_id=7, partition_key="k")
            if resent.entry_id() == -1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert (resent.ledger_id(), resent.entry_id()) == (-1, -1)
    finally:
        client.close()


def test_subscription_keeps_messages_published_before_it_when_created_at_earliest(
    stack: Any, admin: PulsarAdmin, pulsar_namespace: tuple[str, str]
) -> None:
    tenant, ns = pulsar_namespace
    admin.create_tenant(tenant, admin.clusters())
    admin.create_namespace(tenant, ns)
    topic = TopicName(tenant, ns, "early")
    admin.create_topic(topic, 0)
    client = pulsar.Client(stack.pulsar_url)
    try:
        producer = client.create_producer(str(topic))
        for i in range(7):
            producer.send(f"m{i}".encode())
        producer.flush()
    finally:
        client.close()

    admin.create_subscription(topic, "late-joiner", earliest=True)
    admin.create_subscription(topic, "newcomer", earliest=False)

    stats = admin.subscription_stats(topic, "late-joiner", partitioned=False)
    assert stats is not None and stats.backlog == 7 and stats.consumers == 0
    latest = admin.subscription_stats(topic, "newcomer", partitioned=False)
    assert latest is not None and latest.backlog == 0


def test_backlogs_reports_each_stage_when_messages_wait(
    stack: Any, admin: PulsarAdmin, pulsar_namespace: tuple[str, str]
) -> None:
    tenant, ns = pulsar_namespace
    topo = topology("p", spec(tenant, ns, partitions=2))
    ensure(admin, topo)
    client = pulsar.Client(stack.pulsar_url)
    try:
        producer = client.create_producer(topo.topic("in"))
        for i in range(5):
            producer.send(f"m{i}".encode())
        producer.flush()
    finally:
        client.close()

    stats = subscription_stats(admin, topo)
    assert {stage: s.backlog for stage, s in stats.items() if s} == {"a": 5, "b": 0}


@pytest.mark.parametrize("partitions", [0, 2])
def test_subscription_stats_give_the_oldest_backlog_time_and_rates_when_messages_wait(
    stack: Any, admin: PulsarAdmin, pulsar_namespace: tuple[str, str], partitions: int
) -> None:
    tenant, ns = pulsar_namespace
    topo = topology("p", spec(tenant, ns, partitions=partitions))
    ensure(admin, topo)
    before_ms = time.time() * 1000
    client = pulsar.Client(stack.pulsar_url)
    try:
        producer = client.create_producer(topo.topic("in"))
        for i in range(5):
            producer.send(f"m{i}".encode())
        producer.flush()
    finally:
        client.close()
    after_ms = time.time() * 1000

    stats = subscription_stats(admin, topo)

    waiting, idle = stats["a"], stats["b"]
    assert waiting is not None and idle is not None
    assert waiting.earliest_backlog_ms is not None
    assert before_ms - 1000 <= waiting.earliest_backlog_ms <= after_ms
    assert idle.earliest_backlog_ms is None and stage_load(idle, datetime.now(UTC)).lag_s == 0
    assert waiting.rate_in >= 0 and waiting.rate_out == 0
    assert stage_load(waiting, datetime.now(UTC)).lag_s >= 0


def test_worker_connections_counts_consumers_and_producers_when_connected(
    stack: Any, admin: PulsarAdmin, pulsar_namespace: tuple[str, str]
) -> None:
    tenant, ns = pulsar_namespace
    topo = topology("p", spec(tenant, ns))
    ensure(admin, topo)
    client = pulsar.Client(stack.pulsar_url)
    try:
        client.subscribe(topo.topic("in"), "k8s.p-a")
        client.create_producer(topo.topic("mid"))
        client.create_producer(topo.topic("in"))  # a user's producer does not count

        assert worker_connections(admin, topo) == 2
    finally:
        client.close()
    assert worker_connections(admin, topo) == 0


def test_delete_created_removes_only_own_topics_and_keeps_those_others_read(
    admin: PulsarAdmin, pulsar_namespace: tuple[str, str]
) -> None:
    tenant, ns = pulsar_namespace
    admin.create_tenant(tenant, admin.clusters())
    admin.create_namespace(tenant, ns)
    admin.create_topic(TopicName(tenant, ns, "in"), 2)  # the producers' own topic
    topo = topology("p", spec(tenant, ns, partitions=2))
    changes = ensure(admin, topo)
    reader = ensure(admin, topology("q", spec(tenant, ns, outputs="q-")), "k8s/q")  # reads in, mid
    assert topo.topic("mid") not in reader.owned_topics
    subscriptions = [f"{s}" for s in topo.stage_subscriptions.values()]

    cleanup = delete_created(admin, ME, changes.owned_topics, subscriptions)

    assert sorted(admin.topics(tenant, ns)) == [
        "in", "mid", "q-a-dlq", "q-a-dlq-attempts", "q-b-dlq", "q-b-dlq-attempts", "q-mid", "q-out",
    ]  # fmt: skip
    assert cleanup.kept == [f"topic {topo.topic('mid')}: still read by subscriptions k8s.q-b"]
    assert admin.subscriptions(TopicName(tenant, ns, "in")) == ["k8s.q-a"]


@pytest.mark.parametrize("partitions", [0, 2], ids=["non-partitioned", "partitioned"])
def test_retire_subscriptions_waits_for_consumers_to_leave_then_deletes(
    stack: Any, admin: PulsarAdmin, pulsar_namespace: tuple[str, str], partitions: int
) -> None:
    tenant, ns = pulsar_namespace
    topo = topology("p", spec(tenant, ns, partitions))
    ensure(admin, topo)
    relay = topo.stage_subscriptions["b"]
    gone = f"{topo.topic('in')}#never-existed"
    client = pulsar.Client(stack.pulsar_url)
    try:
        client.subscribe(topo.topic("mid"), "k8s.p-b")

        assert retire_subscriptions(admin, [relay, gone]) == ([gone], [relay])
    finally:
        client.close()

    assert retire_subscriptions(admin, [relay]) == ([relay], [])
    assert admin.subscriptions(TopicName(tenant, ns, "mid")) == []
    assert admin.subscriptions(TopicName(tenant, ns, "in")) == ["k8s.p-a"]


def test_set_retention_reports_pulsars_reason_when_size_is_below_backlog_quota(
    admin: PulsarAdmin, pulsar_namespace: tuple[str, str]
) -> None:
    tenant, ns = pulsar_namespace
    ensure(admin, topology("p", spec(tenant, ns)))

    with pytest.raises(PulsarRejected, match="412.*backlog quota"):
        admin.set_retention(TopicName(tenant, ns, "in"), Retention(60, 10))


def test_admin_raises_unavailable_when_nothing_listens() -> None:
    unreachable = PulsarAdmin("http://127.0.0.1:9", attempts=2, max_backoff_s=0, timeout_s=1)

    with pytest.raises(PulsarUnavailable, match="ConnectError"):
        unreachable.tenants()
