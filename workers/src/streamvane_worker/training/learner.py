"""The online learner: the ranker's MLP (``mlp.py``) trained example by example with Adam.

Why this learner: it is the architecture the ranking stage serves, so a version it exports is
a drop-in for Triton; Adam's per-weight steps need no learning-rate schedule on a stream whose
scale and distribution drift, which plain SGD does; and a mini-batch step costs a few small
matrix products, so one core sustains thousands of examples per second. Inputs are
standardised with running means and variances (Welford), so raw features such as dwell in
milliseconds and cosines in [-1, 1] can share one row; the statistics fold into the first
layer when a version is exported.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from streamvane_worker.training.mlp import F32, Adam, Weights, forward, gradients

EPS = 1e-6
F64 = npt.NDArray[np.float64]


@dataclass
class RunningStandardiser:
    """Per-column running mean and variance of the rows seen so far."""

    count: int = 0
    # float64: the sums of squares of raw features (milliseconds, counts) exceed float32's range
    # of exact integers.
    mean: F64 = field(default_factory=lambda: np.zeros(0))
    m2: F64 = field(default_factory=lambda: np.zeros(0))

    def update(self, x: F32) -> None:
        """Chan et al.'s parallel update: merge a batch's moments into the running ones."""
        if not len(x):
            return
        if not self.count:
            self.mean, self.m2 = np.zeros(x.shape[1]), np.zeros(x.shape[1])
        n, batch_mean = len(x), x.mean(axis=0, dtype=np.float64)
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + ((x - batch_mean) ** 2).sum(axis=0) + delta**2 * self.count * n / total
        self.count = total

    def scale(self) -> F64:
        variance = self.m2 / max(self.count - 1, 1)
        # A constant column (variance 0) is centred, not blown up.
        return np.where(variance > EPS, 1 / np.sqrt(np.maximum(variance, EPS)), 1.0)

    def apply(self, x: F32) -> F32:
        if not self.count:
            return x
        return ((x - self.mean) * self.scale()).astype(np.float32)


@dataclass(frozen=True)
class LearnerSettings:
    hidden: int = 32
    learning_rate: float = 0.003
    seed: int = 0


@dataclass
class OnlineLearner:
    weights: Weights
    optimizer: Adam
    inputs: RunningStandardiser | None = field(default_factory=RunningStandardiser)
    """None: rows go in as they are (a learner warm-started from served weights, which were
    trained on raw rows: standardising now would change what they compute)."""
    examples_seen: int = 0

    @classmethod
    def new(cls, width: int, settings: LearnerSettings) -> OnlineLearner:
        rng = np.random.default_rng(settings.seed)
        return cls(Weights.initial(width, settings.hidden, rng), Adam(lr=settings.learning_rate))

    @classmethod
    def warm(cls, weights: Weights, settings: LearnerSettings) -> OnlineLearner:
        """A learner that goes on from ``weights`` (a served version), on raw rows."""
        return cls(weights, Adam(lr=settings.learning_rate), inputs=None)

    def _in(self, x: F32) -> F32:
        return x if self.inputs is None else self.inputs.apply(x)

    def score(self, x: F32) -> F32:
        """Engagement probabilities [n] of rows ``x`` under the current weights."""
        return forward(self.weights, self._in(x))[:, 0]

    def learn(self, x: F32, y: F32, w: F32 | None = None) -> None:
        """One Adam step on the mini-batch ``x`` with labels ``y`` [n, 1] and row weights
        ``w`` [n, 1] (None: equal)."""
        if not len(x):
            return
        if self.inputs is not None:
            self.inputs.update(x)
        self.weights = self.optimizer.step_weights(
            self.weights, gradients(self.weights, self._in(x), y, w)
        )
        self.examples_seen += len(x)

    def exported(self) -> Weights:
        """The weights on raw rows: the standardisation folded into the first layer, so the
        served graph computes ``score`` without it."""
        if self.inputs is None or not self.inputs.count:
            return self.weights
        scale = self.inputs.scale()
        w1 = (self.weights.w1 * scale[:, None]).astype(np.float32)
        b1 = (self.weights.b1 - (self.inputs.mean * scale) @ self.weights.w1).astype(np.float32)
        return Weights(w1, b1, self.weights.w2, self.weights.b2)

    def progressive(self, x: F32, y: F32) -> F32:
        """Progressive validation: score the batch first, then learn from it; the scores."""
        scores = self.score(x)
        self.learn(x, y)
        return scores

    def frozen(self) -> OnlineLearner:
        """An independent copy that will not change unless taught."""
        return copy.deepcopy(self)
