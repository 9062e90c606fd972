"""The online trainer's state and its checkpoint encoding (one npz archive, no pickle).

What a restarted trainer needs to resume rather than restart: the learner (weights, Adam's
moments and step, the standardiser), the serving version and its weights, the versions Triton
keeps loaded, the candidate under evaluation with the scores gathered so far, and the counters
that decide the next export. The position in the examples topic is the subscription's: the
checkpoint is persisted before a batch is acked, so the examples after it are redelivered.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from streamvane_worker.training.learner import OnlineLearner, RunningStandardiser
from streamvane_worker.training.mlp import Adam, Weights


@dataclass
class Candidate:
    """A version under evaluation: frozen weights and what it and serving scored since."""

    version: int
    weights: Weights
    examples_learned: int
    newest_example_ms: int
    scores: list[float] = field(default_factory=list)
    serving_scores: list[float] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)


@dataclass
class TrainerState:
    learner: OnlineLearner
    serving: int
    """The version Triton serves, as last announced."""
    serving_weights: Weights
    promoted: int
    """The last version the guard promoted: serving again when a pin is removed."""
    loaded: tuple[int, ...]
    """Versions Triton keeps loaded, oldest first (the serving one last)."""
    next_version: int
    learned_since_export: int = 0
    last_export_s: float = 0.0
    """Wall-clock time of the last candidate (or of the start)."""
    newest_example_ms: int = 0
    candidate: Candidate | None = None
    revision: int = 0
    """Checkpoint version (``KeyedState``): one more at every commit."""


def _weights(prefix: str, weights: Weights) -> dict[str, npt.NDArray[Any]]:
    return {
        f"{prefix}.{n}": a for n, a in zip(["w1", "b1", "w2", "b2"], weights.arrays(), strict=True)
    }


def _read_weights(arrays: dict[str, npt.NDArray[Any]], prefix: str) -> Weights:
    return Weights(*(arrays[f"{prefix}.{n}"].astype(np.float32) for n in ["w1", "b1", "w2", "b2"]))


def encode(state: TrainerState) -> bytes:
    learner = state.learner
    arrays = _weights("learner", learner.weights) | _weights("serving", state.serving_weights)
    for i, (m, v) in enumerate(learner.optimizer.moments):
        arrays[f"adam.m{i}"], arrays[f"adam.v{i}"] = m, v
    if learner.inputs is not None and learner.inputs.count:
        arrays["inputs.mean"], arrays["inputs.m2"] = learner.inputs.mean, learner.inputs.m2
    candidate = state.candidate
    if candidate is not None:
        arrays |= _weights("candidate", candidate.weights)
        arrays["candidate.scores"] = np.asarray(candidate.scores, np.float32)
        arrays["candidate.serving_scores"] = np.asarray(candidate.serving_scores, np.float32)
        arrays["candidate.labels"] = np.asarray(candidate.labels, np.float32)
    meta = {
        "serving": state.serving,
        "promoted": state.promoted,
        "loaded": list(state.loaded),
        "next_version": state.next_version,
        "learned_since_export": state.learned_since_export,
        "last_export_s": state.last_export_s,
        "newest_example_ms": state.newest_example_ms,
        "revision": state.revision,
        "examples_seen": learner.examples_seen,
        "adam": {"lr": learner.optimizer.lr, "step": learner.optimizer.step},
        "moments": len(learner.optimizer.moments),
        "standardised": learner.inputs is not None,
        "inputs_count": learner.inputs.count if learner.inputs is not None else 0,
        "candidate": None
        if candidate is None
        else {
            "version": candidate.version,
            "examples_learned": candidate.examples_learned,
            "newest_example_ms": candidate.newest_example_ms,
        },
    }
    arrays["meta"] = np.asarray(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode(payload: bytes) -> TrainerState:
    """Raises ValueError for a payload that is not a trainer checkpoint."""
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(str(arrays["meta"]))
        inputs: RunningStandardiser | None = None
        if meta["standardised"]:
            inputs = RunningStandardiser(meta["inputs_count"])
            if inputs.count:
                inputs.mean, inputs.m2 = arrays["inputs.mean"], arrays["inputs.m2"]
        optimizer = Adam(
            lr=meta["adam"]["lr"],
            step=meta["adam"]["step"],
            moments=[(arrays[f"adam.m{i}"], arrays[f"adam.v{i}"]) for i in range(meta["moments"])],
        )
        learner = OnlineLearner(
            _read_weights(arrays, "learner"), optimizer, inputs, meta["examples_seen"]
        )
        found = meta["candidate"]
        candidate = (
            None
            if found is None
            else Candidate(
                found["version"],
                _read_weights(arrays, "candidate"),
                found["examples_learned"],
                found["newest_example_ms"],
                arrays["candidate.scores"].tolist(),
                arrays["candidate.serving_scores"].tolist(),
                arrays["candidate.labels"].tolist(),
            )
        )
        return TrainerState(
            learner=learner,
            serving=meta["serving"],
            serving_weights=_read_weights(arrays, "serving"),
            promoted=meta["promoted"],
            loaded=tuple(meta["loaded"]),
            next_version=meta["next_version"],
            learned_since_export=meta["learned_since_export"],
            last_export_s=meta["last_export_s"],
            newest_example_ms=meta["newest_example_ms"],
            candidate=candidate,
            revision=meta["revision"],
        )
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"not a trainer checkpoint: {e}") from e
