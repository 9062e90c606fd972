from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streamvane_worker.config import (
    InferenceSettings,
    PulsarSettings,
    UserProfileParams,
    WorkerConfig,
)


def test_inference_accepts_a_ca_file_when_tls_is_on() -> None:
    settings = InferenceSettings.model_validate({"tls": True, "tlsCaFile": "/etc/ca.crt"})
    assert settings.tls and settings.tls_ca_file == Path("/etc/ca.crt")


def test_inference_rejects_a_ca_file_when_tls_is_off() -> None:
    with pytest.raises(ValidationError, match="tlsCaFile is set but inference.tls is false"):
        InferenceSettings.model_validate({"tlsCaFile": "/etc/ca.crt"})


def _profile_config(**overrides: object) -> dict[str, object]:
    return {
        "pipeline": "p",
        "stage": "profiles",
        "stageType": "user-profile",
        "input": {
            "topic": "persistent://t/n/engagements",
            "subscription": "s",
            "subscriptionType": "Key_Shared",
        },
        "delivery": {"deadLetterTopic": "persistent://t/n/dlq"},
        "state": {"topic": "persistent://t/n/profiles-state"},
        "params": {"catalogueTopic": "persistent://t/c/enriched"},
        **overrides,
    }


def test_worker_config_accepts_a_user_profile_stage_when_it_has_state_and_a_keyed_input() -> None:
    config = WorkerConfig.model_validate(_profile_config())
    assert isinstance(config.typed_params(), UserProfileParams)


def test_worker_config_rejects_a_stateful_stage_when_it_has_no_state_topic() -> None:
    with pytest.raises(ValidationError, match="needs a 'state' section"):
        WorkerConfig.model_validate(_profile_config(state=None))


def test_worker_config_rejects_a_stateful_stage_when_its_subscription_is_shared() -> None:
    shared = {"topic": "persistent://t/n/e", "subscription": "s", "subscriptionType": "Shared"}
    with pytest.raises(ValidationError, match="Key_Shared or Failover"):
        WorkerConfig.model_validate(_profile_config(input=shared))


def test_pulsar_settings_accept_a_ca_file_when_the_service_url_uses_tls() -> None:
    settings = PulsarSettings.model_validate(
        {"serviceUrl": "pulsar+ssl://pulsar.test:6651", "tlsCaFile": "/etc/pulsar-ca/ca.crt"}
    )
    assert settings.tls_ca_file == Path("/etc/pulsar-ca/ca.crt")


def test_pulsar_settings_reject_a_ca_file_when_the_service_url_is_plain() -> None:
    with pytest.raises(ValidationError, match="serviceUrl is not pulsar\\+ssl://"):
        PulsarSettings.model_validate({"tlsCaFile": "/etc/pulsar-ca/ca.crt"})


def test_worker_config_rejects_a_ranking_stage_when_its_backend_is_not_triton() -> None:
    ranking = _profile_config(
        stage="rank",
        stageType="ranking",
        state=None,
        params={"catalogueTopic": "persistent://t/c/enriched"},
        inference={"backend": "onnxruntime", "onnxPath": "/m.onnx", "modelName": "recs-ranker"},
    )
    with pytest.raises(ValidationError, match="ranking.s model is the ranker on Triton"):
        WorkerConfig.model_validate(ranking)


def _join_config(**overrides: object) -> dict[str, object]:
    join: dict[str, object] = {
        "stageType": "training-examples",
        "input": {
            "topic": "persistent://t/n/recommendations",
            "subscription": "s",
            "subscriptionType": "Key_Shared",
        },
        "params": {"engagementsTopic": "engagements"},
    }
    return _profile_config(**(join | overrides))


def test_worker_config_qualifies_side_inputs_like_the_input_when_a_join_reads_engagements() -> None:
    config = WorkerConfig.model_validate(_join_config())
    assert config.side_inputs() == {"engagementsTopic": "persistent://t/n/engagements"}


def test_worker_config_rejects_a_join_when_it_asks_for_effectively_once() -> None:
    with pytest.raises(ValidationError, match="must be AtLeastOnce"):
        WorkerConfig.model_validate(
            _join_config(
                delivery={
                    "deadLetterTopic": "persistent://t/n/dlq",
                    "guarantee": "EffectivelyOnce",
                },
                input={
                    "topic": "persistent://t/n/recommendations",
                    "subscription": "s",
                    "subscriptionType": "Failover",
                },
            )
        )


def test_worker_config_rejects_a_side_input_when_it_is_the_stage_input() -> None:
    with pytest.raises(ValidationError, match="side input"):
        WorkerConfig.model_validate(_join_config(params={"engagementsTopic": "recommendations"}))
