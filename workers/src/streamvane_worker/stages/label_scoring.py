"""Scoring an embedding against classes (tags, safety categories): pure numpy.

Two ways, chosen by the stage's ``mode``:

- zero-shot: each class has prototypes (its description's embedding and, with examples, their
  centroid); its score is the best cosine similarity to one of them;
- classifier: a linear head (softmax regression) trained on the classes' example embeddings
  (descriptions count as examples); its score is the head's probability.

And, for safety, thresholds calibrated on benign texts to a target false-positive rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamvane_worker.inference.backend import EmbeddingArray, unit_rows
from streamvane_worker.training.mlp import Adam

HEAD_STEPS = 300
HEAD_LEARNING_RATE = 0.05
HEAD_L2 = 1e-4


@dataclass(frozen=True)
class ClassTexts:
    """One class's texts: its description and example texts."""

    name: str
    description: str
    examples: Sequence[str] = ()

    def texts(self) -> list[str]:
        return [self.description, *self.examples]


class Scores(Protocol):
    def __call__(self, vectors: EmbeddingArray) -> EmbeddingArray:
        """Rows [n, dim] of unit embeddings -> scores [n, classes]."""
        ...


@dataclass(frozen=True)
class Prototypes:
    vectors: EmbeddingArray
    """[prototypes, dim], grouped by class."""
    starts: npt.NDArray[np.intp]
    """Index of each class's first prototype."""

    @classmethod
    def of(cls, embedded: Sequence[EmbeddingArray]) -> Prototypes:
        """Per class, its texts' embeddings [1 + examples, dim], description first: the
        description and, with examples, their centroid."""
        per_class = [
            [e[0], unit_rows(e[1:].mean(axis=0))] if len(e) > 1 else [e[0]] for e in embedded
        ]
        starts = np.cumsum([0, *(len(p) for p in per_class[:-1])])
        return cls(np.stack([v for p in per_class for v in p]).astype(np.float32), starts)

    def __call__(self, vectors: EmbeddingArray) -> EmbeddingArray:
        scores: EmbeddingArray = np.maximum.reduceat(vectors @ self.vectors.T, self.starts, axis=1)
        return scores


@dataclass(frozen=True)
class LinearHead:
    weights: EmbeddingArray
    """[dim, classes]"""
    bias: EmbeddingArray

    def __call__(self, vectors: EmbeddingArray) -> EmbeddingArray:
        return _softmax(vectors @ self.weights + self.bias)


def _softmax(logits: EmbeddingArray) -> EmbeddingArray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float32)


def train_head(embedded: Sequence[EmbeddingArray], seed: int = 0) -> LinearHead:
    """Softmax regression on each class's embeddings (full-batch Adam, L2), classes balanced
    by weighting each example by 1 / its class's size."""
    x = np.concatenate(embedded).astype(np.float32)
    labels = np.concatenate([np.full(len(e), k) for k, e in enumerate(embedded)])
    onehot = np.eye(len(embedded), dtype=np.float32)[labels]
    weight = (1 / np.array([len(e) for e in embedded], np.float32))[labels][:, None]
    weight /= weight.sum()
    rng = np.random.default_rng(seed)
    params = [rng.normal(0, 0.01, (x.shape[1], len(embedded))).astype(np.float32)]
    params.append(np.zeros(len(embedded), np.float32))
    optimizer = Adam(lr=HEAD_LEARNING_RATE)
    for _ in range(HEAD_STEPS):
        w, b = params
        d_logits = (_softmax(x @ w + b) - onehot) * weight
        params = optimizer.update(params, [x.T @ d_logits + HEAD_L2 * w, d_logits.sum(axis=0)])
    return LinearHead(*params)


@dataclass(frozen=True)
class Calibrated:
    threshold: float
    false_positive_rate: float
    """Share of the benign examples at or above ``threshold``."""


def calibrate(benign_scores: npt.NDArray[np.floating[Any]], rate: float) -> Calibrated:
    """The lowest threshold flagging at most ``rate`` of the benign scores."""
    ranked = np.sort(np.asarray(benign_scores, dtype=np.float32))[::-1]
    allowed = int(np.floor(rate * len(ranked)))
    # Just above the first benign score that must stay unflagged (in float32, the scores' type).
    # (rate < 1, so ``allowed`` < len(ranked).)
    threshold = float(np.nextafter(ranked[allowed], np.float32(np.inf)))
    return Calibrated(threshold, float(np.mean(ranked >= threshold)))
