"""Triton python-backend model: all-MiniLM-L6-v2 through onnxruntime on CPU.

Triton's dynamic batcher hands ``execute`` several requests at once, each ``[rows, seq]`` with
its own ``seq`` (the inputs allow ragged batches). They are right-padded to a common length
with pad id 0 and mask 0, which leaves every embedding unchanged, run as one onnxruntime call
and split back per request: one model run per batch is what makes dynamic batching pay.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

INPUTS = ("input_ids", "attention_mask")
OUTPUT = "embedding"
PAD_ID = 0
# all-MiniLM-L6-v2's position table; the tokenizer already truncates at 256.
MAX_POSITIONS = 512

Int64Array = npt.NDArray[np.int64]


def pad_and_stack(parts: list[tuple[Int64Array, Int64Array]]) -> tuple[Int64Array, Int64Array]:
    """Right-pad each request's ``(input_ids, attention_mask)`` to the longest and concatenate."""
    seq = max(ids.shape[1] for ids, _ in parts)
    ids = np.concatenate(
        [np.pad(i, ((0, 0), (0, seq - i.shape[1])), constant_values=PAD_ID) for i, _ in parts]
    )
    mask = np.concatenate(
        [np.pad(m, ((0, 0), (0, seq - m.shape[1])), constant_values=0) for _, m in parts]
    )
    return ids, mask


def split_rows(output: npt.NDArray[np.float32], rows: list[int]) -> list[npt.NDArray[np.float32]]:
    """Split a batched output back into per-request arrays of ``rows[i]`` rows."""
    return np.split(output, np.cumsum(rows)[:-1])


def check_request(ids: Int64Array, mask: Int64Array, max_positions: int) -> str | None:
    """Why a request cannot be served, or None."""
    if ids.shape != mask.shape:
        return f"input_ids shape {ids.shape} differs from attention_mask shape {mask.shape}"
    if ids.shape[1] == 0 or ids.shape[1] > max_positions:
        return f"sequence length {ids.shape[1]} is outside 1..{max_positions}"
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
        parts: list[tuple[Int64Array, Int64Array]] = []
        for index, request in enumerate(requests):
            ids, mask = (pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in INPUTS)
            problem = check_request(ids, mask, MAX_POSITIONS)
            if problem is not None:
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(problem))
                continue
            served.append(index)
            parts.append((ids, mask))
        if not parts:
            return responses

        ids, mask = pad_and_stack(parts)
        try:
            (output,) = self.session.run([OUTPUT], {INPUTS[0]: ids, INPUTS[1]: mask})
        except Exception as e:  # onnxruntime raises bare RuntimeError subclasses
            error = pb_utils.TritonError(f"onnxruntime failed: {e}")
            for index in served:
                responses[index] = pb_utils.InferenceResponse(error=error)
            return responses

        chunks = split_rows(output, [p[0].shape[0] for p in parts])
        for index, chunk in zip(served, chunks, strict=True):
            responses[index] = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(OUTPUT, np.ascontiguousarray(chunk))]
            )
        return responses
