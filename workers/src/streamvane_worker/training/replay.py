"""Offline replay: the online learner over a file of training examples, in file order, against
the same learner frozen after a warm-up prefix (``streamvane train --replay``).

Both models see the same examples after the warm-up; the online one scores each mini-batch
before it learns from it (progressive validation), the frozen one only scores. AUC is reported
over all of them and per window of consecutive examples, so drift shows as the gap opening.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from streamvane_worker.training.examples import FeatureLayout, LayoutMismatch, TrainingExample
from streamvane_worker.training.learner import LearnerSettings, OnlineLearner
from streamvane_worker.training.mlp import F32, auc

MAX_REASONS = 5
I64 = npt.NDArray[np.int64]
Numbered = tuple[int, TrainingExample]


@dataclass(frozen=True)
class ReplaySettings:
    warmup: int = 1000
    window: int = 1000
    batch_size: int = 32
    learner: LearnerSettings = LearnerSettings()


@dataclass(frozen=True)
class Window:
    first_ts: int
    last_ts: int
    examples: int
    positives: int
    online_auc: float
    frozen_auc: float


@dataclass
class Skipped:
    count: int = 0
    reasons: list[str] = field(default_factory=list)
    """The first few, with their line numbers."""

    def add(self, line: int, reason: str) -> None:
        self.count += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f"line {line}: {reason}")


@dataclass(frozen=True)
class ReplayResult:
    examples: int
    """Valid examples replayed, warm-up included."""
    warmup: int
    layout: str
    online_auc: float
    """Progressive AUC of the online learner over the examples after the warm-up."""
    frozen_auc: float
    windows: list[Window]
    skipped: Skipped

    def summary(self) -> dict[str, object]:
        return {
            "examples": self.examples,
            "warmup": self.warmup,
            "evaluated": self.examples - self.warmup,
            "online_auc": round(self.online_auc, 4),
            "frozen_auc": round(self.frozen_auc, 4),
            "features": self.layout,
            "skipped": self.skipped.count,
            "skipped_reasons": self.skipped.reasons,
            "windows": [
                {
                    "first_ts": w.first_ts,
                    "last_ts": w.last_ts,
                    "examples": w.examples,
                    "positives": w.positives,
                    "online_auc": round(w.online_auc, 4),
                    "frozen_auc": round(w.frozen_auc, 4),
                }
                for w in self.windows
            ],
        }


class ReplayError(ValueError):
    """The file cannot be replayed as asked (no valid example, warm-up covering all)."""


def parse_examples(lines: Iterable[str], skipped: Skipped) -> Iterator[Numbered]:
    """Valid examples of JSON lines, with their line numbers; blank lines are passed over,
    invalid ones counted."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, TrainingExample.model_validate_json(line)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "line"
            skipped.add(number, f"{where}: {first['msg']}")


def replay(
    lines: Iterable[str],
    settings: ReplaySettings,
    progress: Callable[[int], None] = lambda _: None,
) -> ReplayResult:
    """Replay ``lines`` (JSON training examples); ``progress`` gets the examples done so far."""
    skipped = Skipped()
    examples = parse_examples(lines, skipped)
    first = next(examples, None)
    if first is None:
        raise ReplayError(_no_examples(skipped))
    layout = FeatureLayout.of(first[1].features)
    online = OnlineLearner.new(layout.width, settings.learner)
    frozen: OnlineLearner | None = None
    done = 0
    scores: list[tuple[F32, F32, F32, I64]] = []
    stream = chain([first], examples)
    while batch := _valid_rows(layout, list(islice(stream, _next_size(done, settings))), skipped):
        x, y, ts = batch
        if done < settings.warmup:
            online.learn(x, y)
        else:
            frozen = frozen or online.frozen()
            scores.append((online.progressive(x, y), frozen.score(x), y[:, 0], ts))
        done += len(x)
        progress(done)
    if not scores:
        raise ReplayError(
            f"the warm-up ({settings.warmup} examples) covers all {done} valid examples: "
            "nothing is left to compare; lower --warmup"
        )
    online_s, frozen_s, labels, times = (
        np.concatenate(column) for column in zip(*scores, strict=True)
    )
    return ReplayResult(
        examples=done,
        warmup=min(settings.warmup, done),
        layout=layout.describe(),
        online_auc=auc(online_s, labels),
        frozen_auc=auc(frozen_s, labels),
        windows=[
            Window(
                first_ts=int(times[i]),
                last_ts=int(times[min(i + settings.window, len(times)) - 1]),
                examples=len(labels[i : i + settings.window]),
                positives=int(labels[i : i + settings.window].sum()),
                online_auc=auc(online_s[i : i + settings.window], labels[i : i + settings.window]),
                frozen_auc=auc(frozen_s[i : i + settings.window], labels[i : i + settings.window]),
            )
            for i in range(0, len(labels), settings.window)
        ],
        skipped=skipped,
    )


def _next_size(done: int, settings: ReplaySettings) -> int:
    """A mini-batch, cut short at the end of the warm-up so the frozen copy is taken there."""
    if done < settings.warmup:
        return min(settings.batch_size, settings.warmup - done)
    return settings.batch_size


def _valid_rows(
    layout: FeatureLayout, batch: list[Numbered], skipped: Skipped
) -> tuple[F32, F32, I64] | None:
    """Rows, labels and times of the batch's examples that fit the layout; None at the end."""
    if not batch:
        return None
    rows, kept = [], []
    for number, example in batch:
        try:
            rows.append(layout.row(example.features))
            kept.append(example)
        except LayoutMismatch as e:
            skipped.add(number, str(e))
    if not rows:
        return (
            np.empty((0, layout.width), np.float32),
            np.empty((0, 1), np.float32),
            np.empty(0, np.int64),
        )
    return (
        np.stack(rows),
        np.array([[e.label] for e in kept], dtype=np.float32),
        np.array([e.ts for e in kept], dtype=np.int64),
    )


def _no_examples(skipped: Skipped) -> str:
    if not skipped.count:
        return "no training examples in the input"
    return f"no valid training example: {skipped.count} invalid lines, e.g. " + "; ".join(
        skipped.reasons
    )
