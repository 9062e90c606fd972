"""The operator benchmark's pure parts: what it counts, reads and calls ready."""

from __future__ import annotations

import os
from types import SimpleNamespace

from bench.bench_operator import (
    GOALS,
    changed,
    counter_by,
    counter_total,
    difference,
    is_ready,
    peak_rss_mb,
    ready_deployment_status,
)

METRICS = """\
# HELP streamvane_operator_pulsar_admin_requests_total Pulsar admin REST requests.
# TYPE streamvane_operator_pulsar_admin_requests_total counter
streamvane_operator_pulsar_admin_requests_total{operation="GET tenants",status="200"} 3.0
streamvane_operator_pulsar_admin_requests_total{operation="GET persistent",status="404"} 2.0
# HELP streamvane_operator_pulsar_admin_requests_created Created.
# TYPE streamvane_operator_pulsar_admin_requests_created gauge
streamvane_operator_pulsar_admin_requests_created{operation="GET tenants",status="200"} 1.7e9
"""


def test_counter_total_sums_every_label_set_and_skips_created_samples() -> None:
    assert counter_total(METRICS, "streamvane_operator_pulsar_admin_requests") == 5
    assert counter_total(METRICS, "streamvane_operator_reconciles") == 0


def test_counter_by_sums_per_label_value_and_difference_keeps_what_grew() -> None:
    before = counter_by(METRICS, "streamvane_operator_pulsar_admin_requests", "operation")
    assert before == {"GET tenants": 3.0, "GET persistent": 2.0}
    after = {**before, "GET tenants": 5.0, "PUT persistent": 1.0}
    assert difference(before, after) == {"GET tenants": 2.0, "PUT persistent": 1.0}


def test_is_ready_when_ready_is_true_for_the_current_generation_only() -> None:
    ready = {"type": "Ready", "status": "True"}
    current = {
        "metadata": {"generation": 2},
        "status": {"observedGeneration": 2, "conditions": [ready]},
    }
    stale = {"metadata": {"generation": 3}, "status": current["status"]}
    assert is_ready(current)
    assert not is_ready(stale)
    assert not is_ready({"metadata": {"generation": 1}})


def test_changed_counts_rewritten_created_and_deleted_objects() -> None:
    before = {"a": "1", "b": "2", "c": "3"}
    after = {"a": "1", "b": "5", "d": "1"}
    assert changed(before, after) == 3
    assert changed(before, before) == 0


def deployment(desired: int | None, generation: int, **status: int | None) -> SimpleNamespace:
    fields = (
        "observed_generation",
        "replicas",
        "updated_replicas",
        "ready_replicas",
        "available_replicas",
    )
    return SimpleNamespace(
        spec=SimpleNamespace(replicas=desired),
        metadata=SimpleNamespace(generation=generation),
        status=SimpleNamespace(**{f: status.get(f) for f in fields}),
    )


def test_ready_deployment_status_marks_every_replica_ready_once() -> None:
    new = ready_deployment_status(deployment(2, 1))
    assert new == {
        "observedGeneration": 1,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
    }
    written = deployment(
        2,
        1,
        observed_generation=1,
        replicas=2,
        updated_replicas=2,
        ready_replicas=2,
        available_replicas=2,
    )
    assert ready_deployment_status(written) is None
    assert (ready_deployment_status(deployment(None, 4)) or {})["replicas"] == 1


def test_peak_rss_of_this_process_is_positive() -> None:
    assert peak_rss_mb(os.getpid()) > 1


def test_goals_hold_at_their_limit_and_fail_above_or_unmeasured() -> None:
    goal = GOALS["ready_s"]
    assert goal.met(goal.limit)
    assert not goal.met(goal.limit + 0.1)
    assert not goal.met(None)
