from __future__ import annotations

import json

from typer.testing import CliRunner

from streamvane_worker.cli import app

from .inference.test_embedder import needs_model


def test_embed_asks_to_build_the_model_when_it_is_missing(tmp_path) -> None:
    result = CliRunner().invoke(app, ["embed", "--model-dir", str(tmp_path)], input="hi\n")
    assert result.exit_code == 1 and "make models" in result.output


@needs_model
def test_embed_prints_one_vector_per_input_line_when_model_is_built() -> None:
    result = CliRunner().invoke(app, ["embed", "--batch-size", "2"], input="a\nb\nc\n")
    assert result.exit_code == 0
    vectors = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(vectors) == 3 and all(len(v) == 384 for v in vectors)
