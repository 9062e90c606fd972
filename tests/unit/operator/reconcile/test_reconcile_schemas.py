"""Which topics get which message schema, how a refusal reads, and the registry calls."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamvane_operator.api.pipeline import PipelineSpec, SchemaCompatibility
from streamvane_operator.pulsar.admin import TopicName, canonical
from streamvane_operator.pulsar.testing import FakePulsar
from streamvane_operator.reconcile.schemas import (
    SchemaRefused,
    SchemaTarget,
    differences,
    ensure_schemas,
    pulsar_strategy,
    schema_targets,
)
from streamvane_worker.schemas import message_schemas

TOPIC = "persistent://t/ns/{}"


def spec(*stages: dict[str, Any]) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {"pulsar": {"tenant": "t", "namespace": "ns"}, "stages": list(stages)}
    )


def stage(name: str, type_: str, topic: str, *outputs: str) -> dict[str, Any]:
    return {"name": name, "type": type_, "input": {"topic": topic}, "outputs": list(outputs)}


RECS = spec(
    stage("profile", "user-profile", "engagements", "profiles"),
    stage("retrieve", "candidate-retrieval", "profiles", "candidates"),
)


@pytest.mark.parametrize(
    ("policy", "strategy"),
    [
        (SchemaCompatibility.BACKWARD, "BACKWARD"),
        (SchemaCompatibility.FULL_TRANSITIVE, "FULL_TRANSITIVE"),
        (SchemaCompatibility.ALWAYS_COMPATIBLE, "ALWAYS_COMPATIBLE"),
    ],
)
def test_pulsar_strategy_names_pulsars_strategy_when_given_a_policy(
    policy: SchemaCompatibility, strategy: str
) -> None:
    assert pulsar_strategy(policy) == strategy


def test_schema_targets_are_outputs_and_created_inputs_when_no_stage_writes_them() -> None:
    assert schema_targets(RECS, {"engagements", "profiles"}) == [
        SchemaTarget("engagements", "Engagement", ("stage 'profile' (user-profile) reads",)),
        SchemaTarget("profiles", "UserProfile", ("stage 'profile' (user-profile) writes",)),
        SchemaTarget(
            "candidates", "Candidates", ("stage 'retrieve' (candidate-retrieval) writes",)
        ),
    ]


def test_schema_targets_leave_an_input_alone_when_another_pipeline_created_it() -> None:
    assert [t.topic for t in schema_targets(RECS, set())] == ["profiles", "candidates"]


def record(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": "X", "fields": list(fields)}


def test_differences_name_changed_new_and_gone_fields_when_records_differ() -> None:
    old = record(
        {"name": "a", "type": "string"},
        {"name": "b", "type": "long"},
        {"name": "n", "type": record({"name": "x", "type": "string"})},
    )
    new = record(
        {"name": "a", "type": "double"},
        {"name": "c", "type": ["null", "string"], "default": None},
        {"name": "n", "type": record({"name": "x", "type": {"type": "array", "items": "long"}})},
    )
    assert differences(old, new) == [
        "'a' is string there, double here",
        "'n.x' is string there, array<long> here",
        "'b' is there (required), not here",
        "'c' is new here (optional)",
    ]


def test_differences_show_what_breaks_first_and_count_the_rest_when_there_are_many() -> None:
    old = record({"name": "gone", "type": "long"})
    new = record(*({"name": f"o{i}", "type": "long", "default": 0} for i in range(6)))
    assert differences(old, new) == [
        "'gone' is there (required), not here",
        *(f"'o{i}' is new here (optional)" for i in range(4)),
        "2 more",
    ]


def test_differences_are_none_when_only_docs_differ() -> None:
    old = record({"name": "a", "type": "string", "doc": "old"})
    assert differences(old, record({"name": "a", "type": "string"})) == []


def test_ensure_schemas_sets_the_strategy_and_registers_each_target_when_compatible() -> None:
    pulsar = FakePulsar()
    admin = pulsar.admin()
    targets = schema_targets(RECS, {"engagements"})
    done = ensure_schemas(admin, "t", "ns", targets, SchemaCompatibility.BACKWARD)
    assert len(done) == 3
    assert pulsar.schema_compatibility == {
        TOPIC.format(t): "BACKWARD" for t in ("engagements", "profiles", "candidates")
    }
    stored = pulsar.schemas[TOPIC.format("candidates")]
    assert stored == [("JSON", canonical(message_schemas()["Candidates"]))]
    pulsar.calls.clear()
    assert ensure_schemas(admin, "t", "ns", targets, SchemaCompatibility.BACKWARD) == []
    assert not [c for c in pulsar.calls if not c.startswith("GET")], "nothing written again"


def test_ensure_schemas_reads_nothing_back_when_the_topics_were_just_created() -> None:
    pulsar = FakePulsar()
    targets = schema_targets(RECS, {"engagements"})

    done = ensure_schemas(
        pulsar.admin(), "t", "ns", targets, SchemaCompatibility.BACKWARD, {t.topic for t in targets}
    )

    assert len(done) == 3
    assert not [c for c in pulsar.calls if c.startswith("GET")]
    assert pulsar.schema_compatibility == {
        TOPIC.format(t): "BACKWARD" for t in ("engagements", "profiles", "candidates")
    }


def test_ensure_schemas_refuses_naming_topic_stage_and_fields_when_the_registry_does() -> None:
    pulsar = FakePulsar()
    foreign = record({"name": "userId", "type": "long"})
    pulsar.schemas[TOPIC.format("candidates")] = [("JSON", json.dumps(foreign))]
    with pytest.raises(SchemaRefused) as refused:
        ensure_schemas(
            pulsar.admin(), "t", "ns", schema_targets(RECS, set()), SchemaCompatibility.FULL
        )
    message = str(refused.value)
    assert message.startswith(
        "stage 'retrieve' (candidate-retrieval) writes Candidates messages to "
        f"{TopicName('t', 'ns', 'candidates')}, but their schema does not pass Full "
        "compatibility (spec.schemaCompatibility) against the registered one (version 0, "
        "JSON): 'userId' is long there, string here"
    )
    assert "already exists" not in message
    assert "strategy FULL: org.apache.avro.SchemaValidationException" in message
    assert "Unable to read schema" not in message
    # The compatible topic was registered all the same; the refused one was not.
    assert len(pulsar.schemas[TOPIC.format("profiles")]) == 1
    assert len(pulsar.schemas[TOPIC.format("candidates")]) == 1
