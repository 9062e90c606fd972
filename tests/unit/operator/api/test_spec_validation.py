"""Semantic checks on schema-valid Pipelines: each problem is reported with what to change."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from streamvane_operator.api.backend import EndpointSpec, InferenceBackendSpec, TLSSpec
from streamvane_operator.api.pipeline import PipelineSpec, PulsarConnection
from streamvane_operator.api.validation import (
    InvalidSpecError,
    name_problems,
    parse,
    pipeline_problems,
)

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

    assert pipeline_problems("p", chain, BACKENDS, "media") == []


def test_pipeline_problems_reports_cycle_when_stages_feed_each_other() -> None:
    loop = spec(stage("a", "x", "y"), stage("b", "y", "z"), stage("c", "z", "x"))

    (problem,) = pipeline_problems("p", loop, BACKENDS, "media")

    assert "cycle" in problem
    assert "a -> b -> c -> a" in problem


def test_pipeline_problems_reports_self_feed_when_output_is_own_input() -> None:
    (problem,) = pipeline_problems("p", spec(stage("a", "x", "x")), BACKENDS, "media")

    assert "publishes to its own input topic 'x'" in problem


def test_pipeline_problems_reports_duplicates_when_stage_names_repeat() -> None:
    problems = pipeline_problems(
        "p", spec(stage("a", "x", "y"), stage("a", "q", "r")), BACKENDS, "media"
    )

    assert any("'a' is used 2 times" in p for p in problems)


def test_pipeline_problems_names_existing_backends_when_reference_is_unknown() -> None:
    embed = stage(
        "embed", "in", "out", type="text-embedding", model={"backend": "gpu", "name": "m"}
    )

    (problem,) = pipeline_problems("p", spec(embed), BACKENDS, "media")

    assert "InferenceBackend 'gpu' does not exist" in problem
    assert "existing: triton" in problem


def test_pipeline_problems_asks_for_model_when_stage_type_infers() -> None:
    (problem,) = pipeline_problems(
        "p", spec(stage("embed", "in", "out", type="text-embedding")), BACKENDS, "media"
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

    (problem,) = pipeline_problems("p", spec(tag), BACKENDS, "media")

    assert problem.startswith("spec.stages[0] ('tag').params.labels")


def test_pipeline_problems_reports_shared_subscription_when_two_stages_read_one_topic() -> None:
    same = {"topic": "in", "subscription": "shared"}
    problems = pipeline_problems(
        "p",
        spec(stage("a", "in", "x") | {"input": same}, stage("b", "in", "y") | {"input": same}),
        BACKENDS,
        "media",
    )

    assert any("share subscription 'shared'" in p for p in problems)


def test_pipeline_problems_reports_dead_letter_clash_when_dlq_is_a_data_topic() -> None:
    clash = stage("a", "in", "out", delivery={"deadLetterTopic": "out"})

    (problem,) = pipeline_problems("p", spec(clash), BACKENDS, "media")

    assert "dead-letter topic 'out' is also a data topic" in problem


def test_pipeline_problems_reports_long_names_when_children_would_exceed_63_chars() -> None:
    problems = pipeline_problems("p" * 40, spec(stage("s" * 30, "in", "out")), BACKENDS, "media")

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

    (problem,) = pipeline_problems("p", chain, BACKENDS, "media")

    assert "stage 'retrieve' (candidate-retrieval) reads UserProfile messages" in problem
    assert "gets ContentItem messages from stage 'embed' (text-embedding)" in problem


def test_pipeline_problems_refuses_ranking_when_a_tagging_stage_feeds_it() -> None:
    labels = {"labels": [{"name": "a", "description": "about a"}]}
    model = {"backend": "triton", "name": "m"}
    chain = spec(
        stage("tag", "in", "tagged", type="tagging", model=model, params=labels),
        stage(
            "rank",
            "tagged",
            "out",
            type="ranking",
            model={"backend": "triton", "name": "recs-ranker"},
            params={"catalogueTopic": "persistent://t/n/c", "topK": 5},
        ),
    )

    (problem,) = pipeline_problems("p", chain, BACKENDS, "media")

    assert "stage 'rank' (ranking) reads Candidates messages" in problem
    assert "gets ContentItem messages from stage 'tag' (tagging)" in problem


def test_pipeline_problems_refuses_ranking_when_it_has_no_model() -> None:
    ranking = stage(
        "rank", "candidates", "out", type="ranking", params={"catalogueTopic": "persistent://t/n/c"}
    )

    (problem,) = pipeline_problems("p", spec(ranking), BACKENDS, "media")

    assert "stage type 'ranking' needs a model (backend and name)" in problem


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

    assert pipeline_problems("p", chain, BACKENDS, "media") == []


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("p" * 64, "must be at most 63"),
        ("has.dot", "must be at most 63"),
        ("7up", "start with a letter"),
    ],
)
def test_name_problems_refuses_names_when_they_cannot_name_services(
    name: str, problem: str
) -> None:
    (found,) = name_problems("Pipeline", name)

    assert problem in found and "re-create it" in found


def test_name_problems_reports_the_long_child_when_stage_makes_it_too_long() -> None:
    (found,) = name_problems("Pipeline", "p" * 40, ["-" + "s" * 30])

    assert "longer than 63 characters" in found and "shorten the Pipeline name" in found


def test_stage_spec_refuses_image_when_reference_is_malformed() -> None:
    good = stage("a", "in", "out", image="registry.local:5000/team/worker:1.2@sha256:" + "a" * 64)
    spec(good)

    with pytest.raises(ValidationError, match="image"):
        spec(stage("a", "in", "out", image="Not An Image!"))


def test_endpoint_refuses_port_when_out_of_range() -> None:
    assert EndpointSpec(url="triton.ns.svc:65535").url.endswith("65535")
    for url in ("triton:0", "triton:65536", "triton:99999"):
        with pytest.raises(ValidationError):
            EndpointSpec(url=url)


def test_stage_params_keep_only_given_fields_when_rendered_for_the_worker() -> None:
    tag = stage(
        "tag",
        "in",
        "out",
        type="tagging",
        model={"backend": "triton", "name": "m"},
        params={"labels": [{"name": "a", "description": "about a"}], "topK": 2},
    )

    (parsed,) = spec(tag).stages

    assert parsed.typed_params() == {"labels": [{"name": "a", "description": "about a"}], "topK": 2}


def test_stage_spec_refuses_unknown_params_when_nested_arbitrarily() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        spec(stage("a", "in", "out", params={"deep": {"deeper": {}}}))


def test_pulsar_connection_refuses_ports_when_out_of_range_and_takes_host_lists() -> None:
    several = PulsarConnection(namespace="ns", service_url="pulsar+ssl://a:6651,b:6651")
    assert several.service_url.endswith("b:6651")
    for field, url in (("service_url", "pulsar://a:99999"), ("admin_url", "http://a:0")):
        with pytest.raises(ValidationError):
            PulsarConnection.model_validate({"namespace": "ns", field: url})


def test_pulsar_connection_refuses_a_ca_when_neither_url_uses_tls() -> None:
    with pytest.raises(ValidationError, match="tls.caSecretRef needs serviceUrl: pulsar"):
        PulsarConnection.model_validate(
            {"namespace": "ns", "tls": {"caSecretRef": {"name": "pulsar-ca"}}}
        )


def test_pulsar_connection_accepts_a_ca_when_the_admin_url_uses_tls() -> None:
    pulsar = PulsarConnection.model_validate(
        {
            "namespace": "ns",
            "adminUrl": "https://pulsar.test:8443",
            "tls": {"caSecretRef": {"name": "pulsar-ca", "key": "ca.crt"}},
        }
    )
    assert pulsar.tls_admin and not pulsar.tls_workers
    assert pulsar.ca_secret_ref is not None and pulsar.ca_secret_ref.key == "ca.crt"


@pytest.mark.parametrize(
    ("scaling", "message"),
    [
        ({"minReplicas": 2, "maxReplicas": 2, "targetLagSeconds": 30}, "targetLagSeconds needs"),
        ({"engine": "KEDA"}, "engine KEDA needs room"),
        ({"minReplicas": 3, "maxReplicas": 2}, "minReplicas must be <= maxReplicas"),
    ],
)
def test_scaling_spec_refuses_contradictions_with_a_message_when_parsed(
    scaling: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(stage("a", "in", scaling=scaling))


def test_scaling_spec_defaults_the_target_lag_when_autoscaled_without_one() -> None:
    scaling = spec(stage("a", "in", scaling={"minReplicas": 0, "maxReplicas": 3})).stages[0].scaling

    assert scaling.autoscaled and scaling.target_lag_s == 60
    assert (scaling.scale_down_delay_seconds, scaling.idle_seconds_before_zero) == (60, 120)


def test_stage_params_check_each_types_own_bounds_when_types_share_a_param_name() -> None:
    catalogue = "persistent://t/n/c"
    retrieve = stage(
        "retrieve",
        "profiles",
        "out",
        type="candidate-retrieval",
        params={"catalogueTopic": catalogue, "topK": 100},
    )
    labels = [{"name": "a", "description": "about a"}]
    model = {"backend": "triton", "name": "m"}
    tag = stage(
        "tag", "in", "tagged", type="tagging", model=model, params={"labels": labels, "topK": 100}
    )

    assert pipeline_problems("p", spec(retrieve), BACKENDS, "media") == []
    (problem,) = pipeline_problems("p", spec(tag), BACKENDS, "media")
    assert "params.topK" in problem and "50" in problem


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "needs input.subscriptionType Failover"),
        ({"input": {"topic": "in", "subscriptionType": "Key_Shared"}}, "Failover"),
        (
            {
                "input": {"topic": "in", "subscriptionType": "Failover"},
                "scaling": {"minReplicas": 1, "maxReplicas": 3},
            },
            "needs scaling.maxReplicas 1",
        ),
    ],
)
def test_stage_spec_refuses_effectively_once_when_it_cannot_hold(
    extra: dict[str, Any], message: str
) -> None:
    eo = {"delivery": {"guarantee": "EffectivelyOnce"}}
    with pytest.raises(ValidationError, match=message):
        spec({**stage("a", "in", "out"), **eo, **extra})


def test_stage_spec_accepts_effectively_once_when_failover_and_at_most_one_replica() -> None:
    failover = {"topic": "in", "subscriptionType": "Failover"}
    parsed = spec(
        stage(
            "a",
            "in",
            "out",
            input=failover,
            delivery={"guarantee": "EffectivelyOnce"},
            scaling={"minReplicas": 0, "maxReplicas": 1},
        )
    )
    assert parsed.stages[0].effectively_once


def _join(engagements: str = "engagements", **params: Any) -> dict[str, Any]:
    return stage(
        "join",
        "recommendations",
        "training-examples",
        type="training-examples",
        input={"topic": "recommendations", "subscriptionType": "Key_Shared"},
        params={"engagementsTopic": engagements, **params},
    )


def test_pipeline_problems_accepts_a_join_when_profiles_read_the_same_engagements() -> None:
    profiles = stage(
        "profiles",
        "engagements",
        "user-profiles",
        type="user-profile",
        input={"topic": "engagements", "subscriptionType": "Key_Shared"},
        params={"catalogueTopic": "persistent://t/n/c"},
    )

    assert pipeline_problems("p", spec(profiles, _join()), BACKENDS, "media") == []


def test_pipeline_problems_refuses_a_join_when_its_engagements_topic_gets_other_messages() -> None:
    chain = spec(stage("tag", "items", "engagements"), _join())

    (problem,) = pipeline_problems("p", chain, BACKENDS, "media")
    assert "reads Engagement messages but its input topic 'engagements' gets ContentItem" in problem


def test_pipeline_problems_refuses_a_join_when_its_side_input_is_its_own_output() -> None:
    problems = pipeline_problems("p", spec(_join("training-examples")), BACKENDS, "media")
    assert any("side input" in p for p in problems)


def test_pipeline_problems_refuses_a_late_topic_when_it_is_a_data_topic() -> None:
    problems = pipeline_problems("p", spec(_join(lateTopic="recommendations")), BACKENDS, "media")
    assert any("late-events topic 'recommendations'" in p for p in problems)


def _trainer(repository: str = "/models/triton") -> dict[str, Any]:
    trainer = stage(
        "train",
        "examples",
        "model-versions",
        type="online-training",
        model={"backend": "gpu", "name": "recs-ranker"},
        params={"modelRepository": repository},
        scaling={"minReplicas": 1, "maxReplicas": 1},
    )
    trainer["input"]["subscriptionType"] = "Failover"
    return trainer


def _managed(**managed: Any) -> dict[str, InferenceBackendSpec]:
    repository = {"uri": "/models/triton", "persistentVolumeClaim": "triton-models"}
    fields = {"modelRepository": repository, "modelControl": "explicit", **managed}
    return {"gpu": InferenceBackendSpec.model_validate({"managed": fields})}


def test_pipeline_problems_accepts_a_trainer_on_a_managed_backend_it_can_write_and_load() -> None:
    assert pipeline_problems("p", spec(_trainer()), _managed(), "media") == []
    assert pipeline_problems("p", spec(_trainer("/models/triton/")), _managed(), "media") == []


def test_pipeline_problems_says_what_a_managed_backend_lacks_for_a_trainer() -> None:
    (control,) = pipeline_problems("p", spec(_trainer()), _managed(modelControl="none"), "media")
    assert "set spec.managed.modelControl: explicit on InferenceBackend 'gpu'" in control
    no_claim = _managed(modelRepository={"uri": "s3://models/triton"})
    (claim,) = pipeline_problems("p", spec(_trainer()), no_claim, "media")
    assert "persistentVolumeClaim" in claim
    (path,) = pipeline_problems("p", spec(_trainer("/elsewhere")), _managed(), "media")
    assert "params.modelRepository '/elsewhere' must be the path" in path
    assert "'/models/triton'" in path
