from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from models.build import BuildOutputs, build_all, default_cache
from tokenizers import Tokenizer

Batch = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
"""``(input_ids, attention_mask)`` as the tokenizer contract produces them."""


@pytest.fixture(scope="session")
def minilm() -> BuildOutputs:
    """The real model, built into the cache once (a no-op when `make models` already ran)."""
    return build_all(default_cache())


@pytest.fixture(scope="session")
def tokenize(minilm: BuildOutputs) -> Callable[[list[str]], Batch]:
    tokenizer = Tokenizer.from_file(str(minilm.tokenizer_json))

    def run(texts: list[str]) -> Batch:
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask

    return run


@pytest.fixture(scope="session")
def embed_local(minilm: BuildOutputs) -> Callable[[Batch], npt.NDArray[np.float32]]:
    """The ONNX model in-process on onnxruntime's CPU provider."""
    session = ort.InferenceSession(str(minilm.model_onnx), providers=["CPUExecutionProvider"])

    def run(batch: Batch) -> npt.NDArray[np.float32]:
        ids, mask = batch
        (out,) = session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
        return np.asarray(out)

    return run
