"""The ranker's network in numpy: one hidden ReLU layer and a sigmoid output over a feature row.

``models/ranker.py`` trains it at build time (full batch) and the online learner trains it from
a stream (mini-batches); both use this forward pass, these gradients and this Adam step, so the
model served, the model built and the model learned online are one architecture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Weights:
    w1: F32
    """[inputs, hidden]"""
    b1: F32
    w2: F32
    """[hidden, 1]"""
    b2: F32

    @classmethod
    def initial(cls, inputs: int, hidden: int, rng: np.random.Generator) -> Weights:
        """He-initialised first layer, zero biases."""
        return cls(
            rng.normal(0, np.sqrt(2 / inputs), (inputs, hidden)).astype(np.float32),
            np.zeros(hidden, dtype=np.float32),
            rng.normal(0, np.sqrt(1 / hidden), (hidden, 1)).astype(np.float32),
            np.zeros(1, dtype=np.float32),
        )

    def arrays(self) -> list[F32]:
        return [self.w1, self.b1, self.w2, self.b2]


def sigmoid(x: npt.NDArray[np.floating[Any]]) -> F32:
    return np.asarray(np.exp(-np.logaddexp(0, -x)), dtype=np.float32)


def forward(weights: Weights, x: F32) -> F32:
    """Probabilities [n, 1] of the rows ``x`` [n, inputs]."""
    hidden = np.maximum(x @ weights.w1 + weights.b1, 0)
    return sigmoid(hidden @ weights.w2 + weights.b2)


def gradients(weights: Weights, x: F32, y: F32, w: F32 | None = None) -> list[F32]:
    """Gradients of the logistic loss of rows ``x`` with labels ``y`` [n, 1], averaged with
    the row weights ``w`` [n, 1] (None: all equal), in the order of ``Weights.arrays``."""
    pre = x @ weights.w1 + weights.b1
    hidden = np.maximum(pre, 0)
    prob = sigmoid(hidden @ weights.w2 + weights.b2)
    d_logit = (prob - y) / len(y) if w is None else (prob - y) * (w / w.sum())
    d_hidden = (d_logit @ weights.w2.T) * (pre > 0)
    return [x.T @ d_hidden, d_hidden.sum(0), hidden.T @ d_logit, d_logit.sum(0)]


@dataclass
class Adam:
    """Adam's moments and step count for one list of parameter arrays (its optimizer state)."""

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    step: int = 0
    moments: list[tuple[F32, F32]] = field(default_factory=list)

    def update(self, params: list[F32], grads: list[F32]) -> list[F32]:
        if not self.moments:
            self.moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
        self.step += 1
        updated = []
        for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
            m, v = self.moments[i]
            m = self.beta1 * m + (1 - self.beta1) * grad
            v = self.beta2 * v + (1 - self.beta2) * grad**2
            self.moments[i] = (m, v)
            m_hat, v_hat = m / (1 - self.beta1**self.step), v / (1 - self.beta2**self.step)
            updated.append(
                (param - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(np.float32)
            )
        return updated

    def step_weights(self, weights: Weights, grads: list[F32]) -> Weights:
        return Weights(*self.update(weights.arrays(), grads))


def auc(scores: npt.NDArray[np.floating[Any]], labels: npt.NDArray[np.floating[Any]]) -> float:
    """Probability that a positive outscores a negative (ties count half); 0.5 without both."""
    _, inverse, counts = np.unique(np.asarray(scores), return_inverse=True, return_counts=True)
    # The mean rank of each run of equal scores, so ties count half.
    ranks = (np.cumsum(counts) - counts + (counts + 1) / 2)[inverse]
    positives = np.asarray(labels) > 0.5
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
