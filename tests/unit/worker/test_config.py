from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streamvane_worker.config import InferenceSettings


def test_inference_accepts_a_ca_file_when_tls_is_on() -> None:
    settings = InferenceSettings.model_validate({"tls": True, "tlsCaFile": "/etc/ca.crt"})
    assert settings.tls and settings.tls_ca_file == Path("/etc/ca.crt")


def test_inference_rejects_a_ca_file_when_tls_is_off() -> None:
    with pytest.raises(ValidationError, match="tlsCaFile is set but inference.tls is false"):
        InferenceSettings.model_validate({"tlsCaFile": "/etc/ca.crt"})
