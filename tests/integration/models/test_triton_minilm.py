"""all-MiniLM-L6-v2 served by the stack's real tritonserver (python backend, onnxruntime)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as grpcclient
from models.build import MODEL_NAME

from streamvane_stack import Endpoints

pytestmark = pytest.mark.integration

Batch = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
Tokenize = Callable[[list[str]], Batch]
Embed = Callable[[Batch], npt.NDArray[np.float32]]

TEXTS = [
    "A man is eating food.",
    "Triton batches requests from many workers into one model run.",
    "ok",
    "Pulsar topics carry content items; each stage publishes its results downstream.",
]


@pytest.fixture(scope="module")
def client(stack: Endpoints) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(stack.triton_grpc)


def _inputs(batch: Batch) -> list[grpcclient.InferInput]:
    inputs = []
    for name, array in zip(("input_ids", "attention_mask"), batch, strict=True):
        tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _statistics_once_counted(
    client: grpcclient.InferenceServerClient, inference_count: int, timeout_s: float = 10.0
) -> Any:
    """Model statistics once they count ``inference_count`` inferences.

    Triton records a request's statistics only after its response is on the wire, so a client
    that has every response may still read the previous counts for a moment.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        stats = client.get_inference_statistics(MODEL_NAME).model_stats[0]
        if stats.inference_count >= inference_count or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def test_triton_serves_model_interface_when_metadata_is_read(
    client: grpcclient.InferenceServerClient,
) -> None:
    metadata = client.get_model_metadata(MODEL_NAME, as_json=True)
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("input_ids", "INT64", ["-1", "-1"]),
        ("attention_mask", "INT64", ["-1", "-1"]),
    ]
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["outputs"]] == [
        ("embedding", "FP32", ["-1", "384"])
    ]
    assert client.get_model_config(MODEL_NAME, as_json=True)["config"]["max_batch_size"] == 64


def test_triton_matches_onnxruntime_when_batch_is_padded(
    client: grpcclient.InferenceServerClient, tokenize: Tokenize, embed_local: Embed
) -> None:
    batch = tokenize(TEXTS)
    result = client.infer(MODEL_NAME, _inputs(batch))
    served = result.as_numpy("embedding")
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, embed_local(batch), atol=1e-5)


def test_triton_batches_requests_of_different_lengths_when_sent_concurrently(
    client: grpcclient.InferenceServerClient, tokenize: Tokenize, embed_local: Embed
) -> None:
    texts = [" ".join(["word"] * n) for n in range(1, 33)]
    batches = [tokenize([text]) for text in texts]  # one request per text, each its own length
    before = client.get_inference_statistics(MODEL_NAME).model_stats[0]
    results: dict[int, npt.NDArray[np.float32]] = {}
    done = threading.Semaphore(0)

    def callback(index: int) -> Callable[[grpcclient.InferResult, object], None]:
        def on_result(result: grpcclient.InferResult, error: object) -> None:
            assert error is None, error
            results[index] = result.as_numpy("embedding")
            done.release()

        return on_result

    for index, batch in enumerate(batches):
        client.async_infer(MODEL_NAME, _inputs(batch), callback(index))
    for _ in batches:
        assert done.acquire(timeout=60)

    for index, batch in enumerate(batches):
        np.testing.assert_allclose(results[index], embed_local(batch), atol=1e-5)
    after = _statistics_once_counted(client, before.inference_count + len(batches))
    requests = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert requests >= len(batches)  # other tests may share this Triton
    assert executions < requests  # the dynamic batcher merged ragged requests into model runs
