"""Training examples and the feature rows the learner reads from them.

One example is a label, an event time and named features, each a number or a list of numbers
(an embedding). The learner turns the features into one row with a ``FeatureLayout`` fixed by
the first example: the element-wise product of the ``user`` and ``item`` vectors when both are
present (the ranker's cross term), then every other vector, then the scalars; the ranker's
dense features keep their served order. Fields besides these are allowed and ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, Field, field_validator

from streamvane_worker.inference.ranker import DENSE_FEATURES, ITEM, USER
from streamvane_worker.stages.message import Message

F32 = npt.NDArray[np.float32]
FeatureValue = float | list[float]


class TrainingExample(Message):
    """One line of a replay file, and one message of a pipeline's training-examples topic:
    ``label``, ``ts`` and ``features`` are all the learner needs; the rest say where the
    example came from (the join fills them; a replay file may leave them out)."""

    model_config = ConfigDict(extra="ignore")

    label: int = Field(ge=0, le=1, description="1 for a positive engagement, 0 for a negative.")
    ts: int = Field(description="Event time, milliseconds since the epoch.")
    features: dict[str, FeatureValue] = Field(
        min_length=1, description="Named numbers or lists of numbers (embeddings)."
    )
    id: str | None = Field(
        None, description="Deterministic id (the same join yields the same id): de-duplicates."
    )
    request_id: str | None = Field(None, description="The served recommendation list's id.")
    user_id: str | None = None
    item_id: str | None = None
    sample_rate: float = Field(
        1.0,
        gt=0,
        le=1,
        description="The rate examples of this label were kept at (negative down-sampling): "
        "the learner weighs the example by its inverse.",
    )
    model_version: str | None = Field(None, description="The ranking model version that served it.")

    def routing_key(self) -> str:
        return self.user_id or self.id or ""

    @field_validator("features")
    @classmethod
    def _finite(cls, features: dict[str, FeatureValue]) -> dict[str, FeatureValue]:
        for name, value in features.items():
            values = value if isinstance(value, list) else [value]
            if not values:
                raise ValueError(f"feature {name!r} is an empty list")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"feature {name!r} holds a value that is not a finite number")
        return features


class LayoutMismatch(ValueError):
    """An example's features do not have the names and widths of the layout."""


@dataclass(frozen=True)
class FeatureLayout:
    cross_width: int
    """Width of the ``user`` and ``item`` vectors multiplied element-wise; 0 without both."""
    vectors: tuple[tuple[str, int], ...]
    """Other vector features and their widths, by name."""
    scalars: tuple[str, ...]
    """Scalar features: the ranker's dense features in served order, then the rest by name."""

    @classmethod
    def of(cls, features: Mapping[str, FeatureValue]) -> FeatureLayout:
        widths = {n: len(v) for n, v in features.items() if isinstance(v, list)}
        crossed = {USER, ITEM} if widths.get(USER, -1) == widths.get(ITEM, -2) else set()
        scalars = [n for n, v in features.items() if not isinstance(v, list)]
        served = [n for n in DENSE_FEATURES if n in scalars]
        return cls(
            cross_width=widths[USER] if crossed else 0,
            vectors=tuple(sorted((n, w) for n, w in widths.items() if n not in crossed)),
            scalars=(*served, *sorted(set(scalars) - set(served))),
        )

    @property
    def width(self) -> int:
        return self.cross_width + sum(w for _, w in self.vectors) + len(self.scalars)

    def describe(self) -> str:
        parts = [f"{USER}*{ITEM}[{self.cross_width}]"] if self.cross_width else []
        parts += [f"{n}[{w}]" for n, w in self.vectors] + list(self.scalars)
        return ", ".join(parts)

    @cached_property
    def expected(self) -> dict[str, int]:
        """Feature name -> its width (0: a scalar), as every example must have them."""
        widths = {n: w for n, w in self.vectors} | {n: 0 for n in self.scalars}
        if self.cross_width:
            widths |= {USER: self.cross_width, ITEM: self.cross_width}
        return widths

    def row(self, features: Mapping[str, FeatureValue]) -> F32:
        """The learner's input row of one example's features; ``LayoutMismatch`` if they differ."""
        expected = self.expected
        actual = {n: len(v) if isinstance(v, list) else 0 for n, v in features.items()}
        if actual != expected:
            missing = sorted(set(expected) - set(actual))
            extra = sorted(set(actual) - set(expected))
            wrong = sorted(n for n in set(actual) & set(expected) if actual[n] != expected[n])
            raise LayoutMismatch(
                f"features differ from the first example's ({self.describe()}): "
                + "; ".join(
                    f"{what} {names}"
                    for what, names in (
                        ("missing", missing),
                        ("unexpected", extra),
                        ("other width", wrong),
                    )
                    if names
                )
            )
        parts: list[Sequence[float] | F32] = []
        if self.cross_width:
            parts.append(
                np.asarray(features[USER], np.float32) * np.asarray(features[ITEM], np.float32)
            )
        parts += [features[n] for n, _ in self.vectors]  # type: ignore[misc]
        parts.append([features[n] for n in self.scalars])  # type: ignore[misc]
        return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])
