from __future__ import annotations

from typing import Any

from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.api.region import Counters, RegionSpec
from streamvane_operator.rollout.gates import counters, gate_values, lag_seconds, watched
from streamvane_operator.rollout.member import (
    REVISION_LABEL,
    member_pipeline,
    member_spec,
    prune,
    revision_of,
    with_registry,
)

SPEC = PipelineSpec.model_validate(
    {
        "pulsar": {"namespace": "ns", "replication": {"clusters": ["a", "b"]}},
        "placement": {"regions": ["eu", "us"]},
        "rollout": {"waves": [["eu"], ["us"]], "bakeSeconds": 5},
        "image": "ghcr.io/streamvane/worker:1",
        "stages": [
            {
                "name": "embed",
                "type": "text-embedding",
                "input": {"topic": "in"},
                "outputs": ["mid"],
                "model": {"backend": "triton", "name": "m"},
            },
            {"name": "relay", "type": "passthrough", "input": {"topic": "mid"}, "outputs": ["out"]},
        ],
    }
)
REGION = RegionSpec.model_validate(
    {
        "kubeconfigSecretRef": {"namespace": "hub", "name": "eu"},
        "pulsar": {"cluster": "a", "serviceUrl": "pulsar://eu:6650", "adminUrl": "http://eu:8080"},
        "overrides": {"inferenceBackend": "triton-eu", "imageRegistry": "mirror.eu"},
    }
)


def test_member_spec_leaves_out_the_hub_fields_when_rendered() -> None:
    member = member_spec(SPEC)
    assert "placement" not in member and "rollout" not in member
    assert "replication" not in member["pulsar"]
    PipelineSpec.model_validate(member)  # a member operator accepts it


def test_revision_of_changes_only_when_the_member_spec_changes() -> None:
    rollout_only = SPEC.model_copy(update={"rollout": None})
    assert revision_of(member_spec(SPEC)) == revision_of(member_spec(rollout_only))
    other = SPEC.model_copy(update={"image": "ghcr.io/streamvane/worker:2"})
    assert revision_of(member_spec(SPEC)) != revision_of(member_spec(other))


def test_member_pipeline_applies_region_pulsar_and_overrides_when_written() -> None:
    obj = member_pipeline("p", "team", "abc", member_spec(SPEC), REGION)
    assert obj["metadata"]["labels"][REVISION_LABEL] == "abc"
    spec: dict[str, Any] = obj["spec"]
    assert spec["pulsar"]["serviceUrl"] == "pulsar://eu:6650"
    assert spec["stages"][0]["model"]["backend"] == "triton-eu"
    assert spec["image"] == "mirror.eu/streamvane/worker:1"


def test_with_registry_keeps_the_repository_path_when_the_image_names_no_registry() -> None:
    assert with_registry("streamvane/worker:1", "r.io") == "r.io/streamvane/worker:1"
    assert with_registry("localhost:5000/w:1", "r.io/x") == "r.io/x/w:1"


def test_prune_keeps_the_newest_and_the_named_revisions_when_history_is_long() -> None:
    history = [
        {"metadata": {"name": f"p-{i}", "labels": {REVISION_LABEL: f"r{i}"}}, "revision": i}
        for i in range(1, 16)
    ]
    doomed = prune(history, keep=["r2"], limit=10)
    assert doomed == ["p-5", "p-4", "p-3", "p-1"]


def test_gate_values_count_from_the_baseline_when_the_revision_started() -> None:
    watch = watched("ns", "p", SPEC)
    assert watch.inputs == ("in",) and watch.sinks == ("out",)
    assert watch.dead_letters == ("p-embed-dlq", "p-relay-dlq")
    stats = {
        "in": {"msgInCounter": 110},
        "out": {"msgInCounter": 60},
        "p-embed-dlq": {"msgInCounter": 50},
        "mid": {
            "subscriptions": {
                "ns.p-relay": {"msgBacklog": 3, "earliestMsgPublishTimeInBacklog": 1000}
            }
        },
    }
    now = counters(watch, stats)
    assert now == Counters(input=110, dead_lettered=50, output=60)
    values = gate_values(Counters(input=10, dead_lettered=0, output=10), now, lag_s=4)
    assert values.dead_letter_ratio == 0.5 and values.throughput_ratio == 0.5
    assert lag_seconds(watch, stats, now_ms=31_000) == 30


def test_gate_values_give_no_ratio_when_no_input_arrived() -> None:
    values = gate_values(Counters(input=5), Counters(input=5), lag_s=0)
    assert values.dead_letter_ratio is None and values.throughput_ratio is None
