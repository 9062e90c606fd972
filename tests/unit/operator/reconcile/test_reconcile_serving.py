from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streamvane_operator.api.common import Condition, ConditionStatus
from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.reconcile.serving import (
    KEPT_OUT,
    NONE_ANNOUNCED,
    ROLLED_BACK,
    SERVING,
    Announcement,
    ServingTarget,
    announcements,
    condition,
    new_warnings,
    serving_targets,
    verdict,
)
from streamvane_operator.render.worker import worker_params
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
    params: dict[str, Any] = {"catalogueTopic": "persistent://t/content/enriched"}
    if versions is not None:
        params["modelVersionsTopic"] = versions
    return PipelineSpec.model_validate(
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


def test_worker_params_qualify_the_model_versions_topic_when_it_is_local() -> None:
    spec = _spec("model-versions")
    params = worker_params(spec, spec.stages[0])
    assert params["modelVersionsTopic"] == TARGET.topic
    assert params["catalogueTopic"] == "persistent://t/content/enriched"
