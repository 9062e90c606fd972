"""Triton python-backend model: the recommendation ranker through onnxruntime on CPU.

Triton's dynamic batcher hands ``execute`` several requests at once; their rows are
concatenated per input, scored in one onnxruntime call and split back per request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

INPUTS = ("user", "item", "dense")
OUTPUT = "score"


def check_request(arrays: list[np.ndarray]) -> str | None:
    """Why a request cannot be served, or None."""
    rows = {a.shape[0] for a in arrays}
    if len(rows) != 1:
        return f"inputs {INPUTS} have different row counts {sorted(rows)}"
    return None


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_thread_count", "1"))
        options.inter_op_num_threads = 1
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        served: list[int] = []
        parts: list[list[np.ndarray]] = []
        for index, request in enumerate(requests):
            arrays = [pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in INPUTS]
            problem = check_request(arrays)
            if problem is not None:
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(problem))
                continue
            served.append(index)
            parts.append(arrays)
        if not parts:
            return responses
        feeds = {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(INPUTS)}
        try:
            (output,) = self.session.run([OUTPUT], feeds)
        except Exception as e:  # onnxruntime raises bare RuntimeError subclasses
            error = pb_utils.TritonError(f"onnxruntime failed: {e}")
            for index in served:
                responses[index] = pb_utils.InferenceResponse(error=error)
            return responses
        chunks = np.split(output, np.cumsum([p[0].shape[0] for p in parts])[:-1])
        for index, chunk in zip(served, chunks, strict=True):
            responses[index] = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(OUTPUT, np.ascontiguousarray(chunk))]
            )
        return responses
