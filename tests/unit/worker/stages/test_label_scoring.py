"""Scoring against classes: prototypes with examples, margins, a trained head, calibration."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamvane_worker.config import SafetyParams, StageType, TaggingParams
from streamvane_worker.inference.testing import fake_embedder
from streamvane_worker.stages import StageContext, create_stage
from streamvane_worker.stages.item import ContentItem, Decision
from streamvane_worker.stages.label_scoring import Prototypes, calibrate, train_head
from streamvane_worker.stages.tagging import top_tags


def _unit_rows(*rows: list[float]) -> np.ndarray:
    x = np.array(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_class_scores_its_best_prototype_description_or_examples_centroid() -> None:
    described = _unit_rows([1, 0, 0])
    with_examples = _unit_rows([0, 1, 0], [0, 0, 1], [0, 0, 1])
    prototypes = Prototypes.of([described, with_examples])
    assert len(prototypes.vectors) == 3  # description; description + centroid
    scores = prototypes(_unit_rows([0, 0, 1], [1, 0, 0]))
    assert scores[0].tolist() == pytest.approx([0.0, 1.0])
    assert scores[1].tolist() == pytest.approx([1.0, 0.0])


def test_a_trained_head_separates_classes_cosine_cannot_tell_apart() -> None:
    rng = np.random.default_rng(0)
    # Both classes lie near one direction; only a small second coordinate tells them apart.
    a = _unit_rows(*([1, 0.1 + 0.02 * rng.normal(), 0] for _ in range(30)))
    b = _unit_rows(*([1, -0.1 + 0.02 * rng.normal(), 0] for _ in range(30)))
    head = train_head([a, b])
    assert (head(a).argmax(axis=1) == 0).all() and (head(b).argmax(axis=1) == 1).all()
    assert np.allclose(head(a).sum(axis=1), 1)


@given(st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=200), st.floats(0.001, 0.999))
def test_calibration_flags_at_most_the_target_share_and_no_lower_threshold_would(
    scores: list[float], rate: float
) -> None:
    benign = np.array(scores, dtype=np.float32)
    calibrated = calibrate(benign, rate)
    assert calibrated.false_positive_rate == pytest.approx(np.mean(benign >= calibrated.threshold))
    assert calibrated.false_positive_rate <= rate
    unflagged = benign[benign < calibrated.threshold]
    if len(unflagged):
        # Flagging the highest unflagged score too would exceed the rate.
        assert np.mean(benign >= unflagged.max()) > rate


def _tagging(**extra: object) -> TaggingParams:
    return TaggingParams.model_validate(
        {
            "labels": [
                {
                    "name": "cooking",
                    "description": "cooking recipe",
                    "examples": ["oven bake bread", "knife onion"],
                },
                {
                    "name": "sports",
                    "description": "football match",
                    "examples": ["tennis racket serve"],
                },
            ],
            "topK": 2,
            **extra,
        }
    )


def test_margin_keeps_only_a_clear_winner() -> None:
    params = _tagging(minMargin=0.2)
    assert [t.name for t in top_tags(np.array([0.9, 0.5], np.float32), ["a", "b"], params)] == ["a"]
    assert top_tags(np.array([0.6, 0.5], np.float32), ["a", "b"], params) == []
    assert [t.name for t in top_tags(np.array([0.6, 0.5], np.float32), ["a", "b"], _tagging())] == [
        "a",
        "b",
    ]


@pytest.mark.parametrize("mode", ["zero-shot", "classifier"])
async def test_examples_teach_a_label_words_its_description_lacks(mode: str) -> None:
    stage = await create_stage(
        StageContext(
            "s",
            StageType.TAGGING,
            _tagging(mode=mode).model_dump(by_alias=True),
            await fake_embedder(),
        )
    )
    result = await stage.process(
        [
            ContentItem(id="a", title="bake bread in the oven"),
            ContentItem(id="b", title="tennis serve"),
        ]
    )
    assert [out.tags[0].name for out in result.outputs.values()] == ["cooking", "sports"]  # type: ignore[index]


BENIGN = [f"a calm note number {n} about gardens and tea" for n in range(40)]


@pytest.mark.parametrize("mode", ["zero-shot", "classifier"])
async def test_calibrated_safety_flags_no_more_benign_texts_than_its_target(mode: str) -> None:
    params = SafetyParams.model_validate(
        {
            "categories": [
                {
                    "name": "spam",
                    "description": "buy cheap pills now",
                    "examples": ["win free money click"],
                }
            ],
            "mode": mode,
            "calibration": {
                "benignExamples": BENIGN,
                "reviewFalsePositiveRate": 0.1,
                "blockFalsePositiveRate": 0.05,
            },
        }
    )
    stage = await create_stage(
        StageContext("s", StageType.SAFETY, params.model_dump(by_alias=True), await fake_embedder())
    )
    items = [ContentItem(id=f"b{n}", title=t) for n, t in enumerate(BENIGN)]
    items.append(ContentItem(id="spam", title="buy cheap pills now and win free money"))
    outputs = (await stage.process(items)).outputs
    decisions = [outputs[i].safety.decision for i in range(len(items))]  # type: ignore[union-attr]
    assert decisions[-1] == Decision.BLOCK
    assert sum(d != Decision.ALLOW for d in decisions[:-1]) <= 0.1 * len(BENIGN)


def test_safety_without_thresholds_or_calibration_is_refused() -> None:
    with pytest.raises(ValueError, match="need reviewThreshold and blockThreshold"):
        SafetyParams.model_validate({"categories": [{"name": "spam", "description": "d"}]})
    with pytest.raises(ValueError, match="classifier needs params.calibration"):
        SafetyParams.model_validate(
            {
                "categories": [
                    {"name": "s", "description": "d", "reviewThreshold": 0.1, "blockThreshold": 0.2}
                ],
                "mode": "classifier",
            }
        )
