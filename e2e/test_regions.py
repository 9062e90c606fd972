"""Multi-region rollout end to end on the multi-region stack: the hub operator writes member
Pipelines into three kube-apiservers wave by wave; member operators and process runners run
them against two Pulsar clusters. Skipped unless ``STREAMVANE_REGIONS=3 make stack-up``."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import pulsar
import pytest

from process_runner.fixtures import TENANT
from process_runner.regions import (
    MultiRegion,
    Timeline,
    Traffic,
    kubeconfig_secret,
    phase_is,
    regions_fixture,  # noqa: F401  (the regions fixture)
)

# Each test walks whole rollouts (worker start-up, bake, deadlines): on a busy 2-core machine
# one takes longer than the suite's default per-test timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.regions, pytest.mark.timeout(1800)]

BAKE_S = 5
DEADLINE_S = 150
"""Generous: on a busy 2-core machine a worker can take over a minute to become ready."""
MISSING_MODEL = {"backend": "triton-local", "name": "no-such-model"}


@pytest.fixture(autouse=True)
def one_pipeline_at_a_time(regions: MultiRegion) -> Iterator[None]:
    """Each test's Pipelines are deleted after it, pass or fail: workers of one test must not
    slow the next one down."""
    yield
    regions.hub_kubectl("delete", "pipelines", "--all", "-n", regions.namespace, "--wait=false")


def rolled_out(
    world: MultiRegion, name: str, waves: list[list[str]]
) -> tuple[dict[str, Any], Timeline]:
    doc = world.pipeline_doc(name, waves, bakeSeconds=BAKE_S, progressDeadlineSeconds=DEADLINE_S)
    world.apply(doc)
    timeline = Timeline(world, name)
    timeline.until(f"{name} rolled out", phase_is("Complete"), timeout_s=600)
    return doc, timeline


def test_good_change_rolls_through_three_regions_in_two_waves_with_bake_time(
    regions: MultiRegion,
) -> None:
    r1, r2, r3 = regions.region_names()
    doc, _ = rolled_out(regions, "good", [[r1], [r2, r3]])
    before = regions.rollout("good")["revision"]
    with Traffic(regions, "good") as traffic:
        doc["spec"]["stages"][0]["batching"] = {"maxBatchSize": 16}
        regions.apply(doc)
        timeline = Timeline(regions, "good")
        done = phase_is("Complete", "Halted", after=before)
        status = timeline.until("the change rolled out", done, timeout_s=480)
        assert status["rollout"]["phase"] == "Complete", status["rollout"]
        revision = status["rollout"]["revision"]
        time.sleep(2)  # traffic on the new revision everywhere
    assert status["rollout"]["lastGoodRevision"] == revision
    assert status["regionsReady"] == "3/3"
    assert {regions.member_revision(r, "good") for r in (r1, r2, r3)} == {revision}
    wave1_healthy = timeline.first(r1, "Baking")
    wave2_start = min(timeline.first(r, "Progressing") or 1e9 for r in (r2, r3))
    assert wave1_healthy is not None and wave2_start - wave1_healthy >= BAKE_S - 1, timeline.events
    complete = timeline.first("rollout", f"Complete {revision}") or float("nan")
    print(f"\nFIGURE good revision to all regions: {complete:.1f}s (bake {2 * BAKE_S}s)")
    assert traffic.lost() == {url: 0 for url in traffic.sent}


def test_bad_change_is_rolled_back_in_wave_one_while_wave_two_keeps_processing(
    regions: MultiRegion,
) -> None:
    r1, r2, r3 = regions.region_names()
    doc, _ = rolled_out(regions, "bad", [[r1], [r2, r3]])
    good = regions.rollout("bad")["revision"]
    with Traffic(regions, "bad") as traffic:
        stage = doc["spec"]["stages"][0]
        stage.update(type="text-embedding", model=MISSING_MODEL)
        regions.apply(doc)
        timeline = Timeline(regions, "bad")
        status = timeline.until(
            "the bad change rolled back",
            phase_is("RolledBack", "Failed", after=good),
            timeout_s=DEADLINE_S + 180,
        )
        assert status["rollout"]["phase"] == "RolledBack", status["rollout"]
        assert {regions.member_revision(r, "bad") for r in (r1, r2, r3)} == {good}
        assert not any(timeline.first(r, "Progressing") for r in (r2, r3)), timeline.events
    assert status["rollout"]["reason"] == "DeadlineExceeded"
    assert status["rollout"]["lastGoodRevision"] == good
    first_write = timeline.first(r1, "Progressing") or 0.0
    rolled_back = timeline.first("rollout", "RolledBack")
    assert rolled_back is not None and rolled_back - first_write <= DEADLINE_S + 90
    assert traffic.lost() == {url: 0 for url in traffic.sent}
    print(
        f"\nFIGURE bad revision first write to rollback complete: {rolled_back - first_write:.1f}s"
    )


def test_unreachable_region_halts_the_rollout_with_a_clear_status(regions: MultiRegion) -> None:
    r1, r2, r3 = regions.region_names()
    dead = kubeconfig_secret(r3, regions.namespace, _unreachable_kubeconfig())
    healthy = regions.members[r3].endpoints.kubeconfig.read_text()
    regions.apply(dead)
    try:
        regions.apply(regions.pipeline_doc("far", [[r1], [r2, r3]], bakeSeconds=BAKE_S))
        timeline = Timeline(regions, "far")
        status = timeline.until("the rollout halted", phase_is("Halted"), timeout_s=400)
        assert status["rollout"]["reason"] == "Unreachable"
        assert f"{r3} unreachable" in status["rollout"]["message"]
        by_name = {r["name"]: r for r in status["regions"]}
        assert by_name[r3]["phase"] == "Unreachable" and by_name[r3]["message"]
        assert regions.member_pipeline(r2, "far") is None  # the wave is not started around it
        degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "Unreachable"
    finally:
        regions.apply(kubeconfig_secret(r3, regions.namespace, healthy))
    timeline.until("the rollout resumed and completed", phase_is("Complete"), timeout_s=400)


def test_message_published_in_one_pulsar_arrives_replicated_in_the_other(
    regions: MultiRegion,
) -> None:
    r1, r2, _ = regions.region_names()
    one, two = regions.members[r1].endpoints, regions.members[r2].endpoints
    assert one.pulsar_cluster != two.pulsar_cluster
    doc = regions.pipeline_doc("geo", [[r1], [r2]], bakeSeconds=0)
    doc["spec"]["pulsar"]["replication"] = {"clusters": [one.pulsar_cluster, two.pulsar_cluster]}
    regions.apply(doc)
    Timeline(regions, "geo").until(
        "replication set up", lambda s: len(s.get("replicationClusters") or []) == 2, timeout_s=300
    )
    topic = regions.topic("geo-replicated")
    far = pulsar.Client(two.pulsar_url)
    try:
        consumer = far.subscribe(topic, "e2e-geo", initial_position=pulsar.InitialPosition.Earliest)
        sent = [f"geo-{i:03d}" for i in range(40)]
        near = pulsar.Client(one.pulsar_url)
        producer = near.create_producer(topic)
        # The first message also waits for the replicator to start: not part of the delay.
        producer.send(b"warm-up")
        assert consumer.receive(timeout_millis=60_000).data() == b"warm-up"
        for item in sent:
            producer.send(item.encode())
            time.sleep(0.05)  # a steady 20 messages/s
        near.close()
        delays, got = [], set()
        deadline = time.monotonic() + 60
        while got != set(sent) and time.monotonic() < deadline:
            try:
                message = consumer.receive(timeout_millis=1000)
            except pulsar.Timeout:
                continue
            got.add(message.data().decode())
            delays.append(time.time() * 1000 - message.publish_timestamp())
            consumer.acknowledge(message)
    finally:
        far.close()
    assert got == set(sent)
    print(f"\nFIGURE geo-replication delay median {statistics.median(delays):.0f} ms ({TENANT})")


def _unreachable_kubeconfig() -> str:
    """A kubeconfig whose server nothing listens on."""
    return (
        "apiVersion: v1\nkind: Config\nclusters: [{name: gone, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: x}}]\n"
        "contexts: [{name: gone, context: {cluster: gone, user: u}}]\ncurrent-context: gone\n"
    )
