"""Where the built model files live: ``$STREAMVANE_CACHE/models/<model>/`` (see `make models`)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL = "all-minilm-l6-v2"


def cache_dir() -> Path:
    return Path(os.environ.get("STREAMVANE_CACHE", Path.home() / ".cache" / "streamvane"))


def model_dir(model: str = DEFAULT_MODEL) -> Path:
    return cache_dir() / "models" / model


def onnx_path(model: str = DEFAULT_MODEL) -> Path:
    return model_dir(model) / "model.onnx"


def tokenizer_path(model: str = DEFAULT_MODEL) -> Path:
    return model_dir(model) / "tokenizer.json"
