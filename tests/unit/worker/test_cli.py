from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from streamvane_worker.cli import app, stage_params
from streamvane_worker.config import StageType

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


SAFETY_STAGE = {
    "name": "safety",
    "type": "safety",
    "params": {
        "categories": [
            {
                "name": "spam",
                "description": "unsolicited advertising, scams, prizes and phishing",
                "examples": ["You won a free phone, click here to claim it"],
            }
        ],
        "calibration": {
            "benignExamples": [f"A calm video about cooking pasta, part {n}" for n in range(30)],
            "reviewFalsePositiveRate": 0.1,
            "blockFalsePositiveRate": 0.05,
        },
    },
}
TAGGING_STAGE = {
    "name": "tag",
    "type": "tagging",
    "params": {
        "labels": [
            {"name": "cooking", "description": "food and recipes"},
            {"name": "sports", "description": "sport and games"},
        ],
        "topK": 1,
    },
}


def test_stage_params_takes_a_stage_or_the_one_classifier_stage_of_a_pipeline() -> None:
    assert stage_params(SAFETY_STAGE, None)[0] == StageType.SAFETY
    pipeline = {
        "kind": "Pipeline",
        "spec": {"stages": [{"name": "e", "type": "text-embedding"}, TAGGING_STAGE]},
    }
    assert stage_params(pipeline, None)[0] == StageType.TAGGING
    both = {"spec": {"stages": [TAGGING_STAGE, SAFETY_STAGE]}}
    with pytest.raises(ValueError, match="2 tagging or safety stages found; pick one with --name"):
        stage_params(both, None)
    assert stage_params(both, "safety")[0] == StageType.SAFETY
    with pytest.raises(ValueError, match="no tagging or safety stage found"):
        stage_params({"type": "ranking"}, None)


def test_classify_refuses_unknown_labels_and_bad_files_clearly(tmp_path: Path) -> None:
    stage = tmp_path / "stage.yaml"
    stage.write_text(yaml.safe_dump(TAGGING_STAGE))
    examples = tmp_path / "examples.jsonl"
    examples.write_text('{"text": "a goal", "label": "football"}\n')
    result = CliRunner().invoke(
        app, ["classify", "--stage", str(stage), "--examples", str(examples)]
    )
    assert result.exit_code == 2
    assert (
        "labels ['football'] are not among the stage's labels ['cooking', 'sports']"
        in result.output
    )
    examples.write_text('{"text": "a goal"}\n')
    result = CliRunner().invoke(
        app, ["classify", "--stage", str(stage), "--examples", str(examples)]
    )
    assert (
        result.exit_code == 2
        and "examples.jsonl line 1: not a {text, label} object" in result.output
    )
    stage.write_text(
        yaml.safe_dump(
            {**SAFETY_STAGE, "params": {"categories": [{"name": "s", "description": "d"}]}}
        )
    )
    result = CliRunner().invoke(app, ["classify", "--stage", str(stage)])
    assert result.exit_code == 2 and "need reviewThreshold and blockThreshold" in result.output
    head = {"labels": TAGGING_STAGE["params"]["labels"], "mode": "classifier", "headModel": "h"}
    stage.write_text(yaml.safe_dump({**TAGGING_STAGE, "params": head}))
    result = CliRunner().invoke(app, ["classify", "--stage", str(stage)])
    assert result.exit_code == 2 and "headModel is a head served on Triton" in result.output


@needs_model
def test_classify_prints_what_a_calibrated_safety_stage_attaches(tmp_path: Path) -> None:
    stage = tmp_path / "stage.yaml"
    stage.write_text(yaml.safe_dump(SAFETY_STAGE))
    texts = "Claim your free prize now, click the link\nHow to bake bread at home\n\n"
    result = CliRunner().invoke(app, ["classify", "--stage", str(stage)], input=texts)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.get("safety", {}).get("decision") for line in lines] == ["block", "allow", None]
    assert lines[2] == {"error": "no-text"}
    summary = json.loads(result.stderr)
    assert summary["benign_examples"] == 30
    assert summary["thresholds"][0]["benign_review_rate"] <= 0.1


@needs_model
def test_classify_learns_from_labelled_examples_in_classifier_mode(tmp_path: Path) -> None:
    stage = tmp_path / "stage.yaml"
    stage.write_text(
        yaml.safe_dump(
            {**TAGGING_STAGE, "params": {**TAGGING_STAGE["params"], "mode": "classifier"}}
        )
    )
    examples = tmp_path / "examples.jsonl"
    labelled = [
        ("Slow-roasted lamb with rosemary", "cooking"),
        ("The striker scored twice", "sports"),
    ]
    examples.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in labelled))
    result = CliRunner().invoke(
        app,
        ["classify", "--stage", str(stage), "--examples", str(examples)],
        input="A lemon tart recipe\nThe goalkeeper saved a penalty\n",
    )
    assert result.exit_code == 0, result.output
    tags = [json.loads(line)["tags"] for line in result.stdout.splitlines()]
    assert [t[0]["name"] for t in tags] == ["cooking", "sports"]
    assert all(0 < t[0]["score"] <= 1 for t in tags)
