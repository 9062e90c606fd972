from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from pydantic import ValidationError

from streamvane_worker.runtime.decode import encode
from streamvane_worker.stages.recommendation import UserProfile
from streamvane_worker.stages.vector import Float32, Vector

DIM = 384


def _profile(vector: object) -> dict[str, object]:
    return {
        "userId": "u",
        "vector": vector,
        "strength": 1.0,
        "eventCount": 1,
        "version": 1,
        "updatedAt": "2026-12-01T10:00:00Z",
    }


def _values() -> np.ndarray:
    return np.random.default_rng(3).normal(size=DIM).astype(np.float32)


def test_vector_round_trips_exactly_when_written_as_base64_float32() -> None:
    values = _values()
    wire = json.loads(encode(UserProfile.model_validate(_profile(values))))

    raw = base64.b64decode(wire["vector"])
    assert np.array_equal(np.frombuffer(raw, "<f4"), values), "little-endian float32 bytes"
    again = UserProfile.model_validate(wire)
    assert np.array_equal(np.asarray(again.vector), values)
    assert again.vector == UserProfile.model_validate(_profile(values)).vector


def test_vector_accepts_the_older_json_list_when_input_is_numbers() -> None:
    values = _values()
    profile = UserProfile.model_validate(_profile(values.tolist()))

    assert np.array_equal(np.asarray(profile.vector), values)
    assert profile.vector[3] == float(values[3]) and len(profile.vector) == DIM


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (Vector(np.ones(DIM - 1)).to_base64(), "383 values, expected 384"),
        ([1.0] * (DIM + 1), "385 values, expected 384"),
        (Vector(np.full(DIM, np.inf)).to_base64(), "finite"),
        ("not base64!", "not base64"),
        (base64.b64encode(b"abc").decode(), "whole float32"),
        (["a"] * DIM, "not a list of numbers"),
        (7, "expected base64 float32"),
    ],
)
def test_vector_is_refused_when_length_encoding_or_values_are_wrong(
    value: object, reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        UserProfile.model_validate(_profile(value))


def test_vector_is_read_only_when_wrapped_without_a_copy() -> None:
    array = _values()
    vector = Vector.of(array)

    assert np.shares_memory(np.asarray(vector), array)
    with pytest.raises(ValueError, match="read-only"):
        np.asarray(vector)[0] = 1.0


def test_vector_json_schema_says_base64_when_the_schema_is_published() -> None:
    schema = UserProfile.model_json_schema(by_alias=True)["properties"]["vector"]

    assert schema["type"] == "string" and schema["contentEncoding"] == "base64"
    assert schema["minLength"] == schema["maxLength"] == len(Vector(np.zeros(DIM)).to_base64())
    assert Float32(DIM).validate(Vector(np.zeros(DIM))) is not None
