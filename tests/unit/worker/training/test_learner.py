"""The online learner's parts: feature layout, AUC, standardisation, learning."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamvane_worker.training.examples import FeatureLayout, LayoutMismatch, TrainingExample
from streamvane_worker.training.learner import LearnerSettings, OnlineLearner, RunningStandardiser
from streamvane_worker.training.mlp import auc


def test_layout_crosses_user_and_item_and_keeps_the_served_dense_order() -> None:
    features = {
        "logProfileEvents": 2.0,
        "zeta": 1.0,
        "user": [1.0, 2.0],
        "item": [3.0, 4.0],
        "retrievalScore": 0.5,
        "context": [7.0, 8.0, 9.0],
    }
    layout = FeatureLayout.of(features)
    assert layout.cross_width == 2
    assert layout.vectors == (("context", 3),)
    assert layout.scalars == ("retrievalScore", "logProfileEvents", "zeta")
    assert layout.row(features).tolist() == [3.0, 8.0, 7.0, 8.0, 9.0, 0.5, 2.0, 1.0]


def test_vectors_of_different_widths_are_not_crossed() -> None:
    layout = FeatureLayout.of({"user": [1.0, 2.0], "item": [3.0]})
    assert layout.cross_width == 0
    assert layout.row({"user": [1.0, 2.0], "item": [3.0]}).tolist() == [3.0, 1.0, 2.0]


def test_a_row_with_other_features_than_the_layout_names_them() -> None:
    layout = FeatureLayout.of({"user": [1.0, 2.0], "item": [3.0, 4.0], "a": 1.0})
    with pytest.raises(
        LayoutMismatch, match=r"missing \['a'\].*unexpected \['b'\].*other width \['item'\]"
    ):
        layout.row({"user": [1.0, 2.0], "item": [3.0], "b": 2.0})


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"label": 2, "ts": 1, "features": {"a": 1}}', "less than or equal to 1"),
        ('{"label": 1, "ts": 1, "features": {}}', "at least 1 item"),
        ('{"label": 1, "ts": 1, "features": {"a": []}}', "empty list"),
        ('{"label": 1, "ts": 1, "features": {"a": "x"}}', "valid number"),
        ('{"label": 1, "features": {"a": 1}}', "Field required"),
    ],
)
def test_invalid_examples_are_refused_with_the_reason(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        TrainingExample.model_validate_json(line)


def test_non_finite_features_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        TrainingExample(label=1, ts=0, features={"a": [1.0, float("nan")]})


@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=40))
def test_auc_is_the_share_of_positive_negative_pairs_ordered_right(
    pairs: list[tuple[int, bool]],
) -> None:
    scores = np.array([s for s, _ in pairs], dtype=np.float32)
    labels = np.array([float(y) for _, y in pairs])
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        assert auc(scores, labels) == 0.5
        return
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    assert auc(scores, labels) == pytest.approx(wins / (len(pos) * len(neg)))


def test_running_standardiser_matches_the_batch_statistics() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, (1000, 4)).astype(np.float32)
    x[:, 3] = 7  # a constant column is centred, not divided by zero
    stats = RunningStandardiser()
    for chunk in np.array_split(x, 13):
        stats.update(chunk)
    standardised = stats.apply(x)
    assert np.allclose(standardised[:, :3].mean(axis=0), 0, atol=1e-3)
    assert np.allclose(standardised[:, :3].std(axis=0, ddof=1), 1, atol=1e-3)
    assert np.allclose(standardised[:, 3], 0)


def test_the_learner_learns_a_separable_problem_with_raw_features_of_any_scale() -> None:
    rng = np.random.default_rng(1)
    x = np.stack([rng.normal(0, 1, 4000), rng.normal(20_000, 9_000, 4000)], axis=1).astype(
        np.float32
    )
    y = ((x[:, 0] + (x[:, 1] - 20_000) / 9_000) > 0).astype(np.float32).reshape(-1, 1)
    learner = OnlineLearner.new(2, LearnerSettings(seed=3))
    before = auc(learner.score(x[3000:]), y[3000:, 0])
    for start in range(0, 3000, 25):
        learner.learn(x[start : start + 25], y[start : start + 25])
    assert learner.examples_seen == 3000
    assert auc(learner.score(x[3000:]), y[3000:, 0]) > max(before, 0.95)


def test_a_frozen_copy_does_not_follow_the_online_learner() -> None:
    learner = OnlineLearner.new(3, LearnerSettings())
    frozen = learner.frozen()
    x = np.ones((8, 3), np.float32)
    learner.learn(x, np.ones((8, 1), np.float32))
    assert frozen.examples_seen == 0
    assert not np.array_equal(frozen.score(x), learner.score(x))
