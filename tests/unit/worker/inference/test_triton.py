from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.utils import InferenceServerException

from streamvane_worker.inference.errors import (
    BackendOverloaded,
    BackendUnavailable,
    InferenceError,
    InferenceFailed,
    ModelMismatch,
    ModelNotFound,
    from_triton,
)
from streamvane_worker.inference.triton import TritonTls, check_model

METADATA = {
    "name": "m",
    "versions": ["1"],
    "inputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": ["-1", "-1"]},
        {"name": "attention_mask", "datatype": "INT64", "shape": ["-1", "-1"]},
    ],
    "outputs": [{"name": "embedding", "datatype": "FP32", "shape": ["-1", "384"]}],
}


def test_check_model_returns_info_when_tensors_match() -> None:
    info = check_model(METADATA, {"max_batch_size": 64}, "m")
    assert (info.version, info.max_batch_size, info.embedding_dim) == ("1", 64, 384)


def test_check_model_names_every_problem_when_tensors_differ() -> None:
    metadata = {
        **METADATA,
        "inputs": [{"name": "input_ids", "datatype": "INT32", "shape": ["-1", "-1"]}],
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": ["-1", "768"]}],
    }
    with pytest.raises(ModelMismatch) as e:
        check_model(metadata, {"max_batch_size": 0}, "m")
    message = str(e.value)
    for fragment in ("INT32", "attention_mask", "768", "max_batch_size 0"):
        assert fragment in message


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("StatusCode.UNAVAILABLE", BackendUnavailable),
        ("StatusCode.DEADLINE_EXCEEDED", BackendOverloaded),
        ("StatusCode.RESOURCE_EXHAUSTED", BackendOverloaded),
        ("StatusCode.NOT_FOUND", ModelNotFound),
        ("StatusCode.INVALID_ARGUMENT", InferenceFailed),
    ],
)
def test_from_triton_classifies_error_when_grpc_status_is_given(
    status: str, expected: type
) -> None:
    error = from_triton(InferenceServerException("boom", status=status), url="h:1", model="m")
    assert isinstance(error, expected) and "h:1" in str(error)


@pytest.mark.parametrize(
    "message",
    [
        "Request for unknown model: 'm' has no available versions",
        "Server is stopping",
        "Request for unknown model: 'm' version 1 is not ready",
    ],
)
def test_from_triton_reads_shutdown_as_unavailable_or_unserved_when_model_unloads(
    message: str,
) -> None:
    error = from_triton(
        InferenceServerException(message, status="StatusCode.INTERNAL"), url="h:1", model="m"
    )
    assert isinstance(error, BackendUnavailable | ModelNotFound)


def test_tls_names_the_ca_bundle_when_it_is_missing(tmp_path: Path) -> None:
    with pytest.raises(InferenceError, match="missing.crt is not a file"):
        TritonTls(tmp_path / "missing.crt")
