"""Semantic checks on schema-valid Pipelines: each problem is reported with what to change."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from streamvane_operator.api.backend import EndpointSpec, InferenceBackendSpec, TLSSpec
from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.api.validation import InvalidSpecError, parse, pipeline_problems

BACKENDS = {"triton": InferenceBackendSpec(endpoint=EndpointSpec(url="127.0.0.1:8001"))}


def stage(name: str, source: str, *outputs: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "passthrough",
        "input": {"topic": source},
        "outputs": list(outputs),
        **extra,
    }


def spec(*stages: dict[str, Any]) -> PipelineSpec:
    return PipelineSpec.model_validate({"pulsar": {"namespace": "ns"}, "stages": list(stages)})


def test_pipeline_problems_is_empty_when_chain_is_valid() -> None:
    chain = spec(stage("a", "in", "mid"), stage("b", "mid", "out"))

    assert pipeline_problems("p", chain, BACKENDS) == []


def test_pipeline_problems_reports_cycle_when_stages_feed_each_other() -> None:
    loop = spec(stage("a", "x", "y"), stage("b", "y", "z"), stage("c", "z", "x"))

    (problem,) = pipeline_problems("p", loop, BACKENDS)

    assert "cycle" in problem
    assert "a -> b -> c -> a" in problem


def test_pipeline_problems_reports_self_feed_when_output_is_own_input() -> None:
    (problem,) = pipeline_problems("p", spec(stage("a", "x", "x")), BACKENDS)

    assert "publishes to its own input topic 'x'" in problem


def test_pipeline_problems_reports_duplicates_when_stage_names_repeat() -> None:
    problems = pipeline_problems("p", spec(stage("a", "x", "y"), stage("a", "q", "r")), BACKENDS)

    assert any("'a' is used 2 times" in p for p in problems)


def test_pipeline_problems_names_existing_backends_when_reference_is_unknown() -> None:
    embed = stage(
        "embed", "in", "out", type="text-embedding", model={"backend": "gpu", "name": "m"}
    )

    (problem,) = pipeline_problems("p", spec(embed), BACKENDS)

    assert "InferenceBackend 'gpu' does not exist" in problem
    assert "existing: triton" in problem


def test_pipeline_problems_asks_for_model_when_stage_type_infers() -> None:
    (problem,) = pipeline_problems(
        "p", spec(stage("embed", "in", "out", type="text-embedding")), BACKENDS
    )

    assert "needs a model" in problem


def test_pipeline_problems_locates_params_error_when_params_do_not_fit_stage_type() -> None:
    tag = stage(
        "tag",
        "in",
        "out",
        type="tagging",
        model={"backend": "triton", "name": "m"},
        params={"topK": 3},
    )

    (problem,) = pipeline_problems("p", spec(tag), BACKENDS)

    assert problem.startswith("spec.stages[0] ('tag').params.labels")


def test_pipeline_problems_reports_shared_subscription_when_two_stages_read_one_topic() -> None:
    same = {"topic": "in", "subscription": "shared"}
    problems = pipeline_problems(
        "p",
        spec(stage("a", "in", "x") | {"input": same}, stage("b", "in", "y") | {"input": same}),
        BACKENDS,
    )

    assert any("share subscription 'shared'" in p for p in problems)


def test_pipeline_problems_reports_dead_letter_clash_when_dlq_is_a_data_topic() -> None:
    clash = stage("a", "in", "out", delivery={"deadLetterTopic": "out"})

    (problem,) = pipeline_problems("p", spec(clash), BACKENDS)

    assert "dead-letter topic 'out' is also a data topic" in problem


def test_pipeline_problems_reports_long_names_when_children_would_exceed_63_chars() -> None:
    problems = pipeline_problems("p" * 40, spec(stage("s" * 30, "in", "out")), BACKENDS)

    assert any("longer than 63" in p for p in problems)


def test_parse_locates_errors_like_kubectl_when_spec_is_invalid() -> None:
    raw = {
        "pulsar": {"namespace": "ns"},
        "stages": [{"name": "a", "type": "translate", "input": {"topic": "x"}}],
    }

    with pytest.raises(InvalidSpecError) as raised:
        parse(PipelineSpec, raw)

    assert raised.value.problems[0].startswith("spec.stages[0].type:")


def test_tls_spec_refuses_a_ca_when_tls_is_disabled() -> None:
    with pytest.raises(ValidationError, match="caSecretRef needs enabled: true"):
        TLSSpec.model_validate({"caSecretRef": {"name": "triton-ca"}})


def test_pipeline_problems_refuses_a_stage_when_its_input_gets_another_message_type() -> None:
    catalogue = {"catalogueTopic": "persistent://t/n/c"}
    chain = spec(
        stage(
            "embed", "in", "items", type="text-embedding", model={"backend": "triton", "name": "m"}
        ),
        stage("retrieve", "items", "out", type="candidate-retrieval", params=catalogue),
    )

    (problem,) = pipeline_problems("p", chain, BACKENDS)

    assert "stage 'retrieve' (candidate-retrieval) reads UserProfile messages" in problem
    assert "gets ContentItem messages from stage 'embed' (text-embedding)" in problem


def test_pipeline_problems_accepts_profiles_feeding_retrieval_when_types_match() -> None:
    catalogue = {"catalogueTopic": "persistent://t/n/c"}
    chain = spec(
        stage(
            "profiles",
            "engagements",
            "user-profiles",
            type="user-profile",
            input={"topic": "engagements", "subscriptionType": "Key_Shared"},
            params=catalogue,
        ),
        stage(
            "retrieve", "user-profiles", "candidates", type="candidate-retrieval", params=catalogue
        ),
    )

    assert pipeline_problems("p", chain, BACKENDS) == []
