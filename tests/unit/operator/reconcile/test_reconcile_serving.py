from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from streamvane_operator.api.common import API_VERSION, Condition, ConditionStatus
from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.kube.testing import FakeKube
from streamvane_operator.pulsar.testing import FakePulsar
from streamvane_operator.reconcile.common import Deps
from streamvane_operator.reconcile.memory import ReconcileMemory
from streamvane_operator.reconcile.pipeline import owner_of
from streamvane_operator.reconcile.serving import (
    KEPT_OUT,
    NONE_ANNOUNCED,
    ROLLED_BACK,
    SERVING,
    UNREADABLE,
    WRITE_ATTEMPTS,
    Announcement,
    ServingTarget,
    TickOutcome,
    announcements,
    condition,
    needs_ticks,
    new_warnings,
    refresh,
    refresh_pipeline,
    serving_targets,
    unreadable,
    verdict,
)
from streamvane_operator.render.worker import WorkerDefaults, worker_params
from streamvane_worker.stages.model_version import ModelVersion

TARGET = ServingTarget("rank", "recs-ranker", "persistent://t/recs/model-versions")
T0 = datetime(2026, 12, 2, tzinfo=UTC)


def _announced(version: int, serving: int, reason: str = "why") -> Announcement:
    return Announcement(
        model="recs-ranker",
        version=version,
        promoted=version == serving,
        serving_version=serving,
        reason=reason,
    )


def _wire(model: str, version: int, serving: int) -> bytes:
    """A ModelVersion as the trainer publishes it."""
    return (
        ModelVersion(
            model=model,
            version=version,
            promoted=version == serving,
            serving_version=serving,
            reason="auc 0.71",
            auc=0.71,
            announced_at=T0,
        )
        .model_dump_json(by_alias=True)
        .encode()
    )


def _spec(versions: str | None) -> PipelineSpec:
    return PipelineSpec.model_validate(_raw_spec(versions))


def _raw_spec(versions: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"catalogueTopic": "persistent://t/content/enriched"}
    if versions is not None:
        params["modelVersionsTopic"] = versions
    return copy.deepcopy(
        {
            "pulsar": {
                "serviceUrl": "pulsar://p:6650",
                "adminUrl": "http://p:8080",
                "tenant": "t",
                "namespace": "recs",
            },
            "stages": [
                {
                    "name": "rank",
                    "type": "ranking",
                    "input": {"topic": "candidates"},
                    "outputs": ["recommendations"],
                    "model": {"backend": "triton", "name": "recs-ranker"},
                    "params": params,
                }
            ],
        }
    )


def test_announcements_reads_the_workers_model_version_when_other_models_are_interleaved() -> None:
    payloads = [
        _wire("recs-ranker", 3, 3),
        _wire("head", 9, 9),
        b"not json",
        _wire("recs-ranker", 2, 2),
    ]

    found = announcements(payloads, "recs-ranker")

    assert [(a.version, a.serving_version, a.reason) for a in found] == [
        (3, 3, "auc 0.71"),
        (2, 2, "auc 0.71"),
    ]


def test_verdict_says_the_version_serving_when_the_newest_was_promoted() -> None:
    found = verdict(TARGET, [_announced(3, 3, "auc 0.71 >= 0.70"), _announced(2, 2)])
    assert (found.status, found.reason) == (ConditionStatus.TRUE, SERVING)
    assert found.message == "recs-ranker version 3 serving: auc 0.71 >= 0.70"


def test_verdict_says_why_a_version_was_kept_out_and_what_serves_when_it_was_refused() -> None:
    found = verdict(TARGET, [_announced(4, 3, "auc 0.52 < 0.70 - 0.01"), _announced(3, 3)])
    assert (found.status, found.reason) == (ConditionStatus.TRUE, KEPT_OUT)
    assert (
        found.message == "recs-ranker version 4 kept out: auc 0.52 < 0.70 - 0.01; version 3 serving"
    )


def test_verdict_says_rolled_back_when_the_serving_version_went_down() -> None:
    found = verdict(TARGET, [_announced(1, 1, "pinned by hand"), _announced(4, 3)])
    assert found.reason == ROLLED_BACK
    assert found.message == "recs-ranker rolled back to version 1 (from 3): pinned by hand"


def test_verdict_is_unknown_when_nothing_was_announced() -> None:
    found = verdict(TARGET, [])
    assert (found.status, found.reason) == (ConditionStatus.UNKNOWN, NONE_ANNOUNCED)


def test_condition_leads_with_the_warning_when_one_stage_has_one() -> None:
    serving, kept = verdict(TARGET, [_announced(3, 3)]), verdict(TARGET, [_announced(4, 3)])
    found = condition([serving, kept])
    assert found is not None and found.reason == KEPT_OUT and found.status is ConditionStatus.TRUE
    assert found.message == f"{serving.message}; {kept.message}"
    assert condition([]) is None


def test_new_warnings_posts_a_kept_out_version_once_when_the_condition_already_says_it() -> None:
    kept = verdict(TARGET, [_announced(4, 3)])
    assert new_warnings([kept], None) == [kept]
    said = Condition(
        type="ModelServing",
        status=ConditionStatus.TRUE,
        reason=KEPT_OUT,
        message=kept.message,
        last_transition_time=T0,
    )
    assert new_warnings([kept], said) == []
    assert new_warnings([verdict(TARGET, [_announced(3, 3)])], None) == [], "no event: serving"


def test_serving_targets_qualify_a_local_topic_in_the_pipelines_namespace_when_named() -> None:
    assert serving_targets(_spec("model-versions")) == [TARGET]
    assert (
        serving_targets(_spec("persistent://o/x/versions"))[0].topic == "persistent://o/x/versions"
    )
    assert serving_targets(_spec(None)) == []


def test_a_tagging_stage_with_a_trained_head_is_served_by_the_head_not_its_text_model() -> None:
    raw = _raw_spec(None)
    raw["stages"] = [
        {
            "name": "tag",
            "type": "tagging",
            "input": {"topic": "items"},
            "outputs": ["tagged"],
            "model": {"backend": "triton", "name": "all-minilm-l6-v2"},
            "params": {
                "labels": [{"name": "a", "description": "d"}],
                "mode": "classifier",
                "headModel": "news-head",
                "modelVersionsTopic": "head-versions",
            },
        }
    ]
    assert serving_targets(PipelineSpec.model_validate(raw)) == [
        ServingTarget("tag", "news-head", "persistent://t/recs/head-versions")
    ]


def test_worker_params_qualify_the_model_versions_topic_when_it_is_local() -> None:
    spec = _spec("model-versions")
    params = worker_params(spec, spec.stages[0])
    assert params["modelVersionsTopic"] == TARGET.topic
    assert params["catalogueTopic"] == "persistent://t/content/enriched"


def _said(reason: str, message: str, status: str = "True") -> dict[str, Any]:
    return {
        "type": "ModelServing",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-12-01T00:00:00Z",
        "observedGeneration": 1,
    }


def test_refresh_writes_nothing_and_posts_nothing_when_the_condition_already_says_it() -> None:
    kept = verdict(TARGET, [_announced(4, 3)])
    stored = {"observedGeneration": 1, "conditions": [_said(KEPT_OUT, kept.message)]}

    found = refresh(stored, [kept], T0)

    assert (found.conditions, found.warnings) == (None, [])


def test_refresh_keeps_the_transition_time_and_warns_once_when_a_version_is_kept_out() -> None:
    serving = verdict(TARGET, [_announced(3, 3)])
    kept = verdict(TARGET, [_announced(4, 3)])
    stored = {"observedGeneration": 1, "conditions": [_said(SERVING, serving.message)]}

    found = refresh(stored, [kept], T0)

    assert found.conditions is not None and found.warnings == [kept]
    (written,) = found.conditions
    assert (written["reason"], written["message"]) == (KEPT_OUT, kept.message)
    assert written["lastTransitionTime"] == "2026-12-01T00:00:00Z", "still True"


def test_refresh_removes_the_condition_when_no_stage_follows_model_versions() -> None:
    stored = {"conditions": [_said(SERVING, "recs-ranker version 3 serving")]}
    assert refresh(stored, [], T0).conditions == []
    assert refresh({}, [], T0).conditions is None


def test_model_serving_ticks_only_for_followed_versions_or_a_condition_to_clear() -> None:
    assert needs_ticks(_raw_spec("model-versions"), {})
    assert not needs_ticks(_raw_spec(None), None)
    assert needs_ticks(_raw_spec(None), {"conditions": [_said(SERVING, "v3")]})
    assert not needs_ticks({"stages": "not a list"}, {})


VERSIONS = "persistent://t/recs/model-versions"
PIPELINE = ObjectRef(API_VERSION, "Pipeline", "media", "recs")
OWNER = owner_of("recs", "media", "uid-1")


class Timer:
    """The model-serving timer's ticks against an in-memory API server and Pulsar."""

    def __init__(self) -> None:
        self.pulsar = FakePulsar()
        self.pulsar.topics[VERSIONS] = 0
        self.admin = self.pulsar.admin()
        self.kube = FakeKube(
            [
                {
                    "apiVersion": API_VERSION,
                    "kind": "Pipeline",
                    "metadata": {"name": "recs", "namespace": "media", "resourceVersion": "5"},
                    "spec": _raw_spec("model-versions"),
                    "status": {"observedGeneration": 1, "conditions": []},
                }
            ]
        )
        self.deps = Deps(
            kube=self.kube,
            pulsar=lambda url, token, ca=None: self.admin,  # one client per URL, as the pool
            defaults=WorkerDefaults(image="worker:test"),
            memory=ReconcileMemory(announcements_ttl_s=0),
            clock=lambda: T0,
        )

    def announce(self, version: int, serving: int) -> None:
        self.pulsar.entries.setdefault(VERSIONS, []).append(
            [_wire("recs-ranker", version, serving)]
        )

    def tick(self, spec: dict[str, Any] | None = None, resource_version: str = "5") -> TickOutcome:
        stored = self.kube.objects[PIPELINE]
        return refresh_pipeline(
            self.deps,
            OWNER,
            spec or stored["spec"],
            copy.deepcopy(stored["status"]),
            resource_version,
        )

    def conditions(self) -> list[dict[str, Any]]:
        return list(self.kube.objects[PIPELINE]["status"]["conditions"])


@pytest.fixture
def timer() -> Timer:
    return Timer()


def test_tick_writes_the_condition_and_its_event_once_when_a_version_is_kept_out(
    timer: Timer,
) -> None:
    timer.announce(3, 3)
    assert timer.tick().events.items == []
    assert [c["reason"] for c in timer.conditions()] == [SERVING]
    timer.announce(4, 3)

    kept = timer.tick()

    message = "recs-ranker version 4 kept out: auc 0.71; version 3 serving"
    assert [(e.reason, e.message, e.warning) for e in kept.events.items] == [
        ("ModelVersionKeptOut", message, True)
    ]
    assert [(c["reason"], c["message"]) for c in timer.conditions()] == [(KEPT_OUT, message)]
    timer.kube.calls.clear()
    assert timer.tick() == TickOutcome(), "posted once"
    assert ("patch_status", API_VERSION, "Pipeline") not in timer.kube.calls, "nothing at rest"


def test_tick_writes_over_the_status_read_again_when_another_writer_got_there_first(
    timer: Timer,
) -> None:
    stored = timer.kube.objects[PIPELINE]
    ready = {**_said("Reconciled", "ok"), "type": "Ready"}
    stored["status"]["conditions"] = [ready]  # written since the timer read resourceVersion 4
    timer.announce(4, 3)

    late = timer.tick(resource_version="4")

    assert late.unwritten is None
    assert [e.reason for e in late.events.items] == ["ModelVersionKeptOut"]
    assert [c["type"] for c in timer.conditions()] == ["Ready", "ModelServing"], "Ready kept"
    assert timer.tick().events.items == [], "posted once"


def test_tick_gives_up_after_a_few_writes_when_the_status_keeps_changing(timer: Timer) -> None:
    timer.announce(4, 3)
    timer.kube.objects[PIPELINE]["metadata"]["resourceVersion"] = "9"
    writes = 0
    patch_status = timer.kube.patch_status

    def racing(ref: ObjectRef, status: dict[str, Any], resource_version: str | None = None) -> None:
        nonlocal writes
        writes += 1
        meta = timer.kube.objects[PIPELINE]["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)  # another writer won
        patch_status(ref, status, "stale")

    timer.kube.patch_status = racing  # type: ignore[method-assign]

    outcome = timer.tick(resource_version="4")

    assert outcome.unwritten is not None and "changed since" in outcome.unwritten
    assert outcome.events.items == [] and writes == WRITE_ATTEMPTS


def test_a_kept_out_version_is_posted_once_across_a_pulsar_outage(timer: Timer) -> None:
    timer.announce(4, 3)
    assert [e.reason for e in timer.tick().events.items] == ["ModelVersionKeptOut"]
    kept = timer.conditions()[-1]["message"]

    timer.pulsar.unavailable = True
    outage = timer.tick()
    (during,) = timer.conditions()
    assert outage.events.items == []
    assert (during["reason"], during["status"]) == (UNREADABLE, "Unknown")
    assert during["message"].endswith(f"; last read: {kept}")

    timer.pulsar.unavailable = False
    back = timer.tick()
    assert back.events.items == [], "said before the outage: not posted again"
    assert [(c["reason"], c["message"]) for c in timer.conditions()] == [(KEPT_OUT, kept)]


def test_unreadable_says_the_last_reading_when_there_was_one() -> None:
    kept = verdict(TARGET, [_announced(4, 3)])
    assert unreadable(TARGET, "refused", None).message == f"{TARGET.topic}: refused"
    assert unreadable(TARGET, "refused", kept).message.endswith(f"last read: {kept.message}")


def test_tick_removes_the_condition_when_the_spec_no_longer_follows_model_versions(
    timer: Timer,
) -> None:
    timer.announce(3, 3)
    timer.tick()
    timer.pulsar.calls.clear()

    assert timer.tick(_raw_spec(None)) == TickOutcome()

    assert timer.conditions() == []
    assert timer.pulsar.calls == [], "no stage to read for"


def test_tick_leaves_the_status_alone_when_the_spec_cannot_be_read(timer: Timer) -> None:
    timer.announce(3, 3)
    broken = _raw_spec("model-versions")
    broken["stages"][0]["type"] = "no-such-stage"

    assert timer.tick(broken) == TickOutcome()
    assert timer.conditions() == []
