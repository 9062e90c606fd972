"""Conditions that tell the truth, computed from observations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streamvane_operator.api.common import Condition, ConditionStatus
from streamvane_operator.api.pipeline import StageStatus
from streamvane_operator.reconcile.status import (
    DesiredCondition,
    Failure,
    Problem,
    deployment_ready,
    pipeline_status,
    replaced_condition,
    stale_subscriptions,
    with_current_foreign_conditions,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def stages(*ready: int) -> list[StageStatus]:
    return [
        StageStatus(name=f"s{i}", desired_replicas=1, ready_replicas=r, backlog=10 * i)
        for i, r in enumerate(ready)
    ]


def by_type(status: object) -> dict[str, tuple[ConditionStatus, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}  # type: ignore[attr-defined]


def test_pipeline_status_is_ready_when_every_stage_is_ready() -> None:
    status = pipeline_status(
        generation=3,
        stages=stages(1, 1),
        ready_stages={"s0", "s1"},
        problem=None,
        previous=[],
        now=NOW,
    )

    assert by_type(status) == {
        "Ready": (ConditionStatus.TRUE, "AllStagesReady"),
        "Progressing": (ConditionStatus.FALSE, "RolloutComplete"),
        "Degraded": (ConditionStatus.FALSE, "AsExpected"),
    }
    assert status.observed_generation == 3
    assert status.stages_ready == "2/2"
    assert status.backlog == 10


def test_pipeline_status_names_waiting_stages_when_rolling_out() -> None:
    status = pipeline_status(
        generation=1, stages=stages(1, 0), ready_stages={"s0"}, problem=None, previous=[], now=NOW
    )

    ready = next(c for c in status.conditions if c.type == "Ready")
    assert ready.status is ConditionStatus.FALSE
    assert ready.message == "waiting for s1 0/1 ready"
    assert by_type(status)["Progressing"] == (ConditionStatus.TRUE, "RollingOut")


def test_pipeline_status_is_not_ready_and_degraded_when_spec_is_invalid_but_workers_run() -> None:
    problem = Problem(Failure.INVALID_SPEC, "spec.stages[0]: bad")

    status = pipeline_status(
        generation=2, stages=stages(1), ready_stages={"s0"}, problem=problem, previous=[], now=NOW
    )

    # The old workers serve, but generation 2 is not what runs: READY must not say True.
    assert by_type(status) == {
        "Ready": (ConditionStatus.FALSE, "InvalidSpec"),
        "Progressing": (ConditionStatus.FALSE, "InvalidSpec"),
        "Degraded": (ConditionStatus.TRUE, "InvalidSpec"),
    }


def test_pipeline_status_is_not_ready_when_preflight_refused_the_edit() -> None:
    problem = Problem(Failure.PREFLIGHT_FAILED, "Triton at t:1 does not serve model 'x'")

    status = pipeline_status(
        generation=2, stages=stages(1), ready_stages={"s0"}, problem=problem, previous=[], now=NOW
    )

    assert by_type(status) == {
        "Ready": (ConditionStatus.FALSE, "PreflightFailed"),
        "Progressing": (ConditionStatus.TRUE, "Retrying"),
        "Degraded": (ConditionStatus.TRUE, "PreflightFailed"),
    }


def test_pipeline_status_stays_ready_when_pulsar_admin_blips_while_workers_serve() -> None:
    problem = Problem(Failure.PULSAR_UNAVAILABLE, "Pulsar is unreachable: refused")

    status = pipeline_status(
        generation=2, stages=stages(1), ready_stages={"s0"}, problem=problem, previous=[], now=NOW
    )

    assert by_type(status)["Ready"] == (ConditionStatus.TRUE, "AllStagesReady")
    assert by_type(status)["Degraded"] == (ConditionStatus.TRUE, "PulsarUnavailable")


def test_pipeline_status_says_retrying_when_pulsar_is_unreachable() -> None:
    problem = Problem(Failure.PULSAR_UNAVAILABLE, "Pulsar is unreachable: refused")

    status = pipeline_status(
        generation=1, stages=[], ready_stages=set(), problem=problem, previous=[], now=NOW
    )

    conditions = {c.type: c for c in status.conditions}
    assert conditions["Ready"].reason == "PulsarUnavailable"
    assert conditions["Progressing"].reason == "Retrying"
    assert conditions["Degraded"].message == "Pulsar is unreachable: refused"
    assert status.backlog is None


def test_pipeline_status_keeps_transition_time_when_condition_status_is_unchanged() -> None:
    first = pipeline_status(
        generation=1, stages=stages(0), ready_stages=set(), problem=None, previous=[], now=NOW
    )
    later = NOW + timedelta(minutes=5)

    second = pipeline_status(
        generation=1,
        stages=stages(1),
        ready_stages={"s0"},
        problem=None,
        previous=first.conditions,
        now=later,
    )

    times = {c.type: c.last_transition_time for c in second.conditions}
    assert times["Ready"] == later
    assert times["Degraded"] == NOW


def test_deployment_ready_requires_current_generation_replicas_and_no_old_pods() -> None:
    deployment = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 2,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
        },
    }
    stale = {**deployment, "status": {**deployment["status"], "observedGeneration": 1}}
    short = {**deployment, "status": {**deployment["status"], "readyReplicas": 1}}
    old_left = {**deployment, "status": {**deployment["status"], "replicas": 3, "readyReplicas": 3}}

    assert deployment_ready(deployment)
    assert not deployment_ready(stale)
    assert not deployment_ready(short)
    assert not deployment_ready(old_left)
    assert not deployment_ready({"metadata": {"generation": 1}, "spec": {"replicas": 1}})


def test_stale_subscriptions_lists_recorded_ones_no_stage_reads_when_spec_changed() -> None:
    stored = {
        "stages": [
            {"name": "a", "subscription": "persistent://t/n/in#p-a"},
            {"name": "b", "subscription": "persistent://t/n/mid#p-b"},
            {"name": "broken", "subscription": ""},
        ],
        "retiringSubscriptions": ["persistent://t/n/old#p-c"],
    }

    stale = stale_subscriptions(stored, ["persistent://t/n/in#p-a"])

    assert stale == ["persistent://t/n/mid#p-b", "persistent://t/n/old#p-c"]
    assert stale_subscriptions(None, []) == []


def test_stale_subscriptions_lists_a_created_side_input_subscription_when_no_stage_reads_it() -> (
    None
):
    stored = {
        "stages": [{"name": "join", "subscription": "persistent://t/n/recs#p-join"}],
        "createdSubscriptions": [
            "persistent://t/n/recs#p-join",
            "persistent://t/n/engagements#p-join",
        ],
    }

    assert stale_subscriptions(stored, ["persistent://t/n/recs#p-join"]) == [
        "persistent://t/n/engagements#p-join"
    ]


def test_reconcile_status_takes_the_autoscalers_condition_as_stored_now_not_as_read() -> None:
    read_then = Condition(
        type="ScalingActive",
        status=ConditionStatus.TRUE,
        reason="SignalsRead",
        last_transition_time=NOW,
    )
    status = pipeline_status(
        generation=1,
        stages=stages(1),
        ready_stages={"s0"},
        problem=None,
        previous=[read_then],
        now=NOW,
    )
    stored_now = {
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Old",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
            {
                "type": "ScalingActive",
                "status": "False",
                "reason": "SignalsMissing",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
        ]
    }

    merged = with_current_foreign_conditions(status, stored_now)

    assert by_type(merged)["Ready"] == (ConditionStatus.TRUE, by_type(status)["Ready"][1])
    assert by_type(merged)["ScalingActive"] == (ConditionStatus.FALSE, "SignalsMissing")
    assert "ScalingActive" not in by_type(with_current_foreign_conditions(status, {}))


def test_reconcile_status_takes_model_serving_as_stored_now_not_as_read() -> None:
    read_then = Condition(
        type="ModelServing",
        status=ConditionStatus.UNKNOWN,
        reason="NoVersionAnnounced",
        last_transition_time=NOW,
    )
    status = pipeline_status(
        generation=1,
        stages=stages(1),
        ready_stages={"s0"},
        problem=None,
        previous=[read_then],
        now=NOW,
    )
    written = {
        "type": "ModelServing",
        "status": "True",
        "reason": "VersionServing",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }

    merged = with_current_foreign_conditions(status, {"conditions": [written]})

    assert by_type(merged)["ModelServing"] == (ConditionStatus.TRUE, "VersionServing")


READY_STORED = {
    "type": "Ready",
    "status": "True",
    "reason": "AllStagesReady",
    "message": "1/1 stages ready",
    "lastTransitionTime": "2025-12-01T00:00:00Z",
}
STORED = {
    "observedGeneration": 2,
    "conditions": [
        READY_STORED,
        {
            "type": "ModelServing",
            "status": "True",
            "reason": "VersionServing",
            "message": "v1",
            "lastTransitionTime": "2025-12-01T00:00:00Z",
            "observedGeneration": 2,
        },
    ],
}


def test_replaced_condition_is_none_when_the_stored_one_already_says_it() -> None:
    same = DesiredCondition("ModelServing", ConditionStatus.TRUE, "VersionServing", "v1")
    assert replaced_condition(STORED, same, "ModelServing", NOW) is None
    assert replaced_condition({}, None, "ModelServing", NOW) is None


def test_replaced_condition_keeps_its_transition_time_when_the_status_stays() -> None:
    kept_out = DesiredCondition("ModelServing", ConditionStatus.TRUE, "VersionKeptOut", "v2 out")

    found = replaced_condition(STORED, kept_out, "ModelServing", NOW)

    assert found is not None
    assert found[0] == READY_STORED
    assert (found[1]["reason"], found[1]["message"]) == ("VersionKeptOut", "v2 out")
    assert found[1]["lastTransitionTime"] == "2025-12-01T00:00:00Z"
    assert found[1]["observedGeneration"] == 2
    unknown = DesiredCondition("ModelServing", ConditionStatus.UNKNOWN, "Unreadable", "")
    moved = replaced_condition(STORED, unknown, "ModelServing", NOW)
    assert moved is not None and moved[1]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_replaced_condition_removes_it_when_nothing_is_desired() -> None:
    found = replaced_condition(STORED, None, "ModelServing", NOW)
    assert found is not None and [c["type"] for c in found] == ["Ready"]
