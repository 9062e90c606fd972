"""Guarded promotion of candidate versions (pure): when a candidate is due, whether it is good
enough to serve, and what each decision announces.

A candidate is the learner's weights frozen at export time. It is judged on the examples that
come after it, which neither it nor the serving version learned from: both score each one
before the learner does (progressive validation), so the comparison is on fresh data, and a
version trained on bad labels cannot recover during its own evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamvane_worker.training.mlp import auc


@dataclass(frozen=True)
class ExportPolicy:
    every_examples: int
    interval_s: float


def export_due(policy: ExportPolicy, learned_since: int, seconds_since: float) -> bool:
    """A new candidate after ``every_examples`` examples, or after ``interval_s`` if anything
    was learned since the last one."""
    return learned_since >= policy.every_examples or (
        learned_since > 0 and seconds_since >= policy.interval_s
    )


def evaluated(labels: list[float], needed: int) -> bool:
    """Enough examples to judge on, with both labels among them (else AUC says nothing)."""
    return len(labels) >= needed and 0 < sum(labels) < len(labels)


@dataclass(frozen=True)
class Judgement:
    promoted: bool
    auc: float
    serving_auc: float
    reason: str


def judge(
    serving: int,
    candidate_scores: list[float],
    serving_scores: list[float],
    labels: list[float],
    margin: float,
) -> Judgement:
    """Promote the candidate unless its AUC is lower than the serving version's by more than
    ``margin`` on the same examples."""
    y = np.asarray(labels)
    candidate, current = auc(np.asarray(candidate_scores), y), auc(np.asarray(serving_scores), y)
    on = f"on the {len(labels)} examples after it (margin {margin})"
    figures = f"AUC {candidate:.4f} vs version {serving}'s {current:.4f} {on}"
    if candidate < current - margin:
        return Judgement(False, candidate, current, f"worse than serving: {figures}")
    return Judgement(True, candidate, current, f"not worse than serving: {figures}")


def kept_loaded(loaded: tuple[int, ...], serving: int, keep: int) -> tuple[int, ...]:
    """The versions Triton keeps after ``serving`` is served: it and the newest ``keep - 1``
    others, oldest first."""
    others = [v for v in loaded if v != serving][-(keep - 1) :] if keep > 1 else []
    return (*others, serving)
