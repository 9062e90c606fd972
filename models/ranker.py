"""The ranking model of the recommendation pipelines: a small MLP scoring (user, item) pairs,
trained at build time on synthetic engagements over real item embeddings, written as ONNX.

Features of one pair (what the ``ranking`` stage sends and logs):

- ``user``: the user's unit interest vector (``UserProfile.vector``), 384 floats;
- ``item``: the item's unit embedding from the catalogue, 384 floats;
- ``dense``: ``DENSE_FEATURES``, in that order: the retrieval score (cosine), 1.0 if the safety
  stage sent the item to review, log1p of the profile's strength and of its event count.

The graph computes ``score = sigmoid(W2 · relu(W1 · [user * item, dense] + b1) + b2)``: the
probability of a positive engagement.

Training data (deterministic, seeded): the real MiniLM embeddings of the demo catalogue's
items (``e2e/streamvane_demo/content_items.jsonl``, embedded with the model built beside it).
Each synthetic user has a hidden taste (a mix of one or two categories' centroids plus noise);
their profile is built like the user-profile stage builds it, from a few engagements drawn
from their taste; each catalogue item they did not engage with is a training pair labelled by
a Bernoulli draw whose odds rise with taste·item and fall for items sent to review. Plain
numpy: full-batch Adam on the logistic loss, no framework; the network, its gradients and Adam
are the worker's (``streamvane_worker.training.mlp``), which the online learner trains too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamvane_worker.inference.backend import unit_rows
from streamvane_worker.training import mlp
from streamvane_worker.training.mlp import Adam, Weights, auc

RANKER_NAME = "recs-ranker"
DIM = 384
"""Width of the vectors the served ranker takes (all-MiniLM-L6-v2's embeddings)."""
HIDDEN = 32
SEED = 20261201

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Pairs:
    user: F32
    item: F32
    dense: F32
    label: F32


@dataclass(frozen=True)
class Trained:
    weights: Weights
    train_auc: float
    holdout_auc: float
    holdout_cosine_auc: float
    """AUC of the retrieval score alone on the holdout: what ranking adds is the difference."""
    pairs: int


def read_items(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def item_text(item: dict[str, object]) -> str:
    """The text the text-embedding stage embeds (``ContentItem.text``)."""
    return "\n".join(str(item[k]) for k in ("title", "description", "transcript") if item.get(k))


def synthetic_pairs(
    vectors: F32, categories: list[str], users: int, rng: np.random.Generator
) -> Pairs:
    """Engagement pairs for ``users`` synthetic users over the catalogue ``vectors``."""
    names = sorted(set(categories))
    index = np.array([names.index(c) for c in categories])
    centroids = unit_rows(np.stack([vectors[index == k].mean(axis=0) for k in range(len(names))]))
    review = (rng.random(len(vectors)) < 0.15).astype(np.float32)
    rows: list[tuple[F32, F32, F32, float]] = []
    for _ in range(users):
        picks = rng.choice(len(names), size=rng.integers(1, 3), replace=False)
        taste = unit_rows(
            centroids[picks].sum(axis=0) + rng.normal(0, 0.03, vectors.shape[1]).astype(np.float32)
        )
        affinity = vectors @ taste
        odds = np.exp(8 * affinity)
        engaged = rng.choice(
            len(vectors), size=rng.integers(2, 7), replace=False, p=odds / odds.sum()
        )
        total = (vectors[engaged] * rng.uniform(1, 4, (len(engaged), 1))).sum(axis=0)
        strength = float(np.linalg.norm(total))
        user = unit_rows(total.astype(np.float32))
        logit = 10 * (affinity - np.median(affinity)) - 2.0 * review - 0.5
        clicked = rng.random(len(vectors)) < 1 / (1 + np.exp(-logit))
        for j in set(range(len(vectors))) - set(engaged.tolist()):
            dense = np.array(
                [float(user @ vectors[j]), review[j], np.log1p(strength), np.log1p(len(engaged))],
                dtype=np.float32,
            )
            rows.append((user, vectors[j], dense, float(clicked[j])))
    return Pairs(
        user=np.stack([r[0] for r in rows]),
        item=np.stack([r[1] for r in rows]),
        dense=np.stack([r[2] for r in rows]),
        label=np.array([r[3] for r in rows], dtype=np.float32),
    )


def features(user: F32, item: F32, dense: F32) -> F32:
    """The MLP's input row, as the ONNX graph builds it."""
    return np.concatenate([user * item, dense], axis=1).astype(np.float32)


def forward(weights: Weights, user: F32, item: F32, dense: F32) -> F32:
    """Scores [n, 1] in numpy: the reference the ONNX graph is tested against."""
    return mlp.forward(weights, features(user, item, dense))


def train(pairs: Pairs, rng: np.random.Generator, steps: int = 300, lr: float = 0.01) -> Trained:
    """Full-batch Adam on the logistic loss, on 80% of the pairs; AUC on the other 20%."""
    n = len(pairs.label)
    order = rng.permutation(n)
    cut = int(0.8 * n)
    fit, hold = order[:cut], order[cut:]
    x = features(pairs.user, pairs.item, pairs.dense)
    x_fit, y_fit = x[fit], pairs.label[fit, np.newaxis]
    weights = Weights.initial(x.shape[1], HIDDEN, rng)
    optimizer = Adam(lr=lr)
    for _ in range(steps):
        weights = optimizer.step_weights(weights, mlp.gradients(weights, x_fit, y_fit))

    def score(rows: npt.NDArray[np.intp]) -> F32:
        return forward(weights, pairs.user[rows], pairs.item[rows], pairs.dense[rows])[:, 0]

    return Trained(
        weights=weights,
        train_auc=auc(score(fit), pairs.label[fit]),
        holdout_auc=auc(score(hold), pairs.label[hold]),
        holdout_cosine_auc=auc(pairs.dense[hold, 0], pairs.label[hold]),
        pairs=n,
    )


def train_ranker(vectors: F32, categories: list[str], users: int = 160) -> Trained:
    rng = np.random.default_rng(SEED)
    return train(synthetic_pairs(unit_rows(vectors), categories, users, rng), rng)
