from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streamvane_worker.config import InferenceSettings, PulsarSettings


def test_inference_accepts_a_ca_file_when_tls_is_on() -> None:
    settings = InferenceSettings.model_validate({"tls": True, "tlsCaFile": "/etc/ca.crt"})
    assert settings.tls and settings.tls_ca_file == Path("/etc/ca.crt")


def test_inference_rejects_a_ca_file_when_tls_is_off() -> None:
    with pytest.raises(ValidationError, match="tlsCaFile is set but inference.tls is false"):
        InferenceSettings.model_validate({"tlsCaFile": "/etc/ca.crt"})


def test_pulsar_settings_accept_a_ca_file_when_the_service_url_uses_tls() -> None:
    settings = PulsarSettings.model_validate(
        {"serviceUrl": "pulsar+ssl://pulsar.test:6651", "tlsCaFile": "/etc/pulsar-ca/ca.crt"}
    )
    assert settings.tls_ca_file == Path("/etc/pulsar-ca/ca.crt")


def test_pulsar_settings_reject_a_ca_file_when_the_service_url_is_plain() -> None:
    with pytest.raises(ValidationError, match="serviceUrl is not pulsar\\+ssl://"):
        PulsarSettings.model_validate({"tlsCaFile": "/etc/pulsar-ca/ca.crt"})
