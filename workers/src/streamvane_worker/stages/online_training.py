"""online-training: training examples -> the ranker learned online, its versions on Triton.

    TrainingExample --online-training--> ModelVersion (model-versions) --> ranking, operator

One process sees every example (a Failover subscription, one replica). Each micro-batch is
scored by the learner, by the serving version and by the candidate under evaluation, then
learned from (``training.learner``: the ranker's MLP with Adam, weighted by the inverse of
each example's ``sampleRate``); the progressive AUC of the learner and of the serving version
over the last ``evaluationExamples`` are metrics.

Every ``exportEveryExamples`` examples (or ``exportIntervalS`` seconds) the learner's weights
become a candidate version, judged on the next ``evaluationExamples`` examples against the
serving version (``training.promotion``). Promoted: it is written to the model repository
(``training.repository``) and Triton is asked to load it beside the versions it keeps
(explicit model control, ``version_policy: specific``; the loaded ones serve until it is
ready), then announced. Kept out: announced with the reason, never written, and serving stays.
``pinnedVersion`` serves a version by hand (a rollback) and freezes the guard: the learner goes
on learning, but no candidate is exported or judged (one under evaluation is dropped), so the
pin's announcement stays the newest; removing the pin goes back to the last version the guard
promoted, and candidates resume.

Order per batch: Triton loads, then the announcement is persisted, then the checkpoint (the
state topic, ``training.checkpoint``), then the batch is acked; a crash in between repeats
the batch's learning, and version numbers are never reused (the repository's are skipped).
At the first start the learner is warm-started from the newest version in the repository.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from streamvane_worker.config import OnlineTrainingParams
from streamvane_worker.inference.errors import BackendUnavailable, InferenceError
from streamvane_worker.inference.ranker import DENSE_FEATURES
from streamvane_worker.io.base import Outgoing, Sink
from streamvane_worker.stages.base import (
    ItemError,
    Stage,
    StageContext,
    StageKind,
    StageResult,
    send_all,
)
from streamvane_worker.stages.keyed_state import Codec, KeyedState, StateMetrics
from streamvane_worker.stages.model_version import ModelVersion
from streamvane_worker.training import checkpoint, repository
from streamvane_worker.training.checkpoint import Candidate, TrainerState
from streamvane_worker.training.examples import FeatureLayout, LayoutMismatch, TrainingExample
from streamvane_worker.training.learner import LearnerSettings, OnlineLearner
from streamvane_worker.training.mlp import F32, Weights, auc, forward
from streamvane_worker.training.promotion import (
    ExportPolicy,
    Judgement,
    evaluated,
    export_due,
    judge,
    kept_loaded,
)

log = structlog.get_logger(__name__)

CODEC = Codec(checkpoint.encode, checkpoint.decode, lambda s: s.revision)


class ModelLoader(Protocol):
    """Triton for one model (``TritonBackend``; a fake in unit tests)."""

    @property
    def model(self) -> str: ...

    async def describe(self) -> tuple[dict[str, Any], dict[str, Any]]: ...

    async def load(self, config: Mapping[str, Any]) -> None: ...


class TrainerMetrics:
    def __init__(self, registry: CollectorRegistry | None, pipeline: str, stage: str) -> None:
        labels = ["pipeline", "stage"]
        auc_gauge = Gauge(
            "streamvane_worker_trainer_auc",
            "Progressive AUC over the last evaluationExamples examples, of the learner "
            "(model=online) and of the serving version (model=serving).",
            [*labels, "model"],
            registry=registry,
        )
        self.online_auc = auc_gauge.labels(pipeline, stage, "online")
        self.serving_auc = auc_gauge.labels(pipeline, stage, "serving")
        self.serving = Gauge(
            "streamvane_worker_trainer_serving_version",
            "The model version the trainer last announced as serving.",
            labels,
            registry=registry,
        ).labels(pipeline, stage)
        versions = Counter(
            "streamvane_worker_trainer_versions",
            "Candidate versions judged, by outcome (promoted, kept_out).",
            [*labels, "outcome"],
            registry=registry,
        )
        self.promoted = versions.labels(pipeline, stage, "promoted")
        self.kept_out = versions.labels(pipeline, stage, "kept_out")
        self.examples = Counter(
            "streamvane_worker_trainer_examples", "Examples learned.", labels, registry=registry
        ).labels(pipeline, stage)


def ranker_layout(weights: Weights) -> FeatureLayout:
    """The rows the served graph reads: ``user * item`` then the dense features in order."""
    return FeatureLayout(
        cross_width=weights.w1.shape[0] - len(DENSE_FEATURES), vectors=(), scalars=DENSE_FEATURES
    )


def with_versions(config: Mapping[str, Any], versions: Sequence[int]) -> dict[str, Any]:
    """The model's served config asking Triton for exactly ``versions`` (pure): the whole
    config, since a partial one would lose its backend."""
    return {**config, "version_policy": {"specific": {"versions": list(versions)}}}


def announcement(
    model: str,
    version: int,
    state: TrainerState,
    reason: str,
    *,
    promoted: bool,
    candidate: Candidate | None = None,
    scores: tuple[float, float] | None = None,
) -> ModelVersion:
    newest_ms = candidate.newest_example_ms if candidate else state.newest_example_ms
    return ModelVersion(
        model=model,
        version=version,
        promoted=promoted,
        serving_version=state.serving,
        reason=reason[:2048],
        auc=scores[0] if scores else None,
        serving_auc=scores[1] if scores else None,
        window=len(candidate.labels) if candidate else 0,
        examples_learned=candidate.examples_learned if candidate else 0,
        newest_example_time=datetime.fromtimestamp(newest_ms / 1000, UTC) if newest_ms else None,
        announced_at=datetime.now(UTC),
    )


class OnlineTraining:
    def __init__(
        self,
        params: OnlineTrainingParams,
        state: TrainerState,
        checkpoints: KeyedState[TrainerState],
        triton: ModelLoader,
        config: Mapping[str, Any],
        outputs: Sequence[Sink],
        metrics: TrainerMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._params = params
        self._state = state
        self._checkpoints = checkpoints
        self._triton = triton
        self._config = config
        self._outputs = outputs
        self._m = metrics
        self._clock = clock
        self._root = Path(params.model_repository)
        self._layout = ranker_layout(state.serving_weights)
        self._policy = ExportPolicy(params.export_every_examples, params.export_interval_s)
        window = params.evaluation_examples
        self._window: deque[tuple[float, float, float]] = deque(maxlen=window)
        """(learner score, serving score, label) of the latest examples: the AUC metrics."""
        # Batches may be processed concurrently; the learner and the versions are one state.
        self._lock = asyncio.Lock()

    @property
    def state(self) -> TrainerState:
        return self._state

    async def start(self) -> None:
        """Make Triton serve what the state and the pin say, announcing a change of it."""
        async with self._lock:
            wanted = self._params.pinned_version or self._state.promoted
            announced: list[ModelVersion] = []
            if wanted != self._state.serving:
                reason = (
                    f"pinned by params.pinnedVersion (was version {self._state.serving})"
                    if self._params.pinned_version
                    else f"pin removed: back to version {wanted}, the last one promoted"
                )
                weights = await asyncio.to_thread(
                    repository.read_weights, self._root, self._triton.model, wanted
                )
                await self._serve(wanted, weights)
                announced.append(
                    announcement(self._triton.model, wanted, self._state, reason, promoted=True)
                )
            else:
                await self._load(self._state.loaded)
            if self._params.pinned_version and self._state.candidate is not None:
                log.info("candidate_dropped", version=self._state.candidate.version, why="pinned")
                self._state.candidate = None
            await self._persist(announced)
            self._m.serving.set(self._state.serving)

    async def process(self, examples: list[TrainingExample]) -> StageResult:
        async with self._lock:
            # All or nothing: a failure leaves the state as it was and the batch is retried.
            before = copy.deepcopy(self._state)
            try:
                errors = await self._process(examples)
            except BaseException:
                self._state = before
                raise
            return StageResult(errors=errors)

    async def _process(self, examples: list[TrainingExample]) -> list[ItemError]:
        rows, labels, weights, errors = self._rows(examples)
        if not len(rows):
            return errors
        announced = []
        judged = self._learn(rows, labels, weights)
        if judged is not None:
            candidate, verdict = judged
            if verdict.promoted:
                await asyncio.to_thread(
                    repository.write_version,
                    self._root,
                    self._triton.model,
                    candidate.version,
                    candidate.weights,
                )
                await self._serve(candidate.version, candidate.weights)
                self._state.promoted = candidate.version
            announced.append(
                announcement(
                    self._triton.model,
                    candidate.version,
                    self._state,
                    verdict.reason,
                    promoted=verdict.promoted,
                    candidate=candidate,
                    scores=(verdict.auc, verdict.serving_auc),
                )
            )
        if not self._params.pinned_version and export_due(
            self._policy,
            self._state.learned_since_export,
            self._clock() - self._state.last_export_s,
        ):
            self._export_candidate()
        await self._persist(announced)
        return errors

    def _rows(self, examples: list[TrainingExample]) -> tuple[F32, F32, F32, list[ItemError]]:
        rows, labels, weights, errors = [], [], [], []
        for i, example in enumerate(examples):
            try:
                rows.append(self._layout.row(example.features))
            except LayoutMismatch as e:
                errors.append(ItemError(i, "features-mismatch", str(e)))
                continue
            labels.append(example.label)
            weights.append(1 / example.sample_rate)
            self._state.newest_example_ms = max(self._state.newest_example_ms, example.ts)
        width = self._layout.width
        return (
            np.stack(rows) if rows else np.empty((0, width), np.float32),
            np.asarray(labels, np.float32).reshape(-1, 1),
            np.asarray(weights, np.float32).reshape(-1, 1),
            errors,
        )

    def _learn(self, x: F32, y: F32, w: F32) -> tuple[Candidate, Judgement] | None:
        """Score the batch (learner, serving, candidate), learn from it; the candidate and
        its judgement once its evaluation is complete."""
        state = self._state
        online = state.learner.score(x).tolist()
        serving = forward(state.serving_weights, x)[:, 0].tolist()
        labels = y[:, 0].tolist()
        self._window.extend(zip(online, serving, labels, strict=True))
        state.learner.learn(x, y, w)
        state.learned_since_export += len(x)
        self._m.examples.inc(len(x))
        scored = np.asarray(self._window)
        self._m.online_auc.set(auc(scored[:, 0], scored[:, 2]))
        self._m.serving_auc.set(auc(scored[:, 1], scored[:, 2]))
        candidate = state.candidate
        if candidate is None:
            return None
        candidate.scores += forward(candidate.weights, x)[:, 0].tolist()
        candidate.serving_scores += serving
        candidate.labels += labels
        if not evaluated(candidate.labels, self._params.evaluation_examples):
            return None
        verdict = judge(
            state.serving,
            candidate.scores,
            candidate.serving_scores,
            candidate.labels,
            self._params.promotion_margin,
        )
        state.candidate = None
        (self._m.promoted if verdict.promoted else self._m.kept_out).inc()
        log.info(
            "candidate_judged",
            version=candidate.version,
            promoted=verdict.promoted,
            auc=round(verdict.auc, 4),
            serving_auc=round(verdict.serving_auc, 4),
            examples=len(candidate.labels),
        )
        return candidate, verdict

    def _export_candidate(self) -> None:
        state = self._state
        if state.candidate is not None:
            return  # one at a time: the next one after this one's judgement
        state.candidate = Candidate(
            state.next_version,
            state.learner.exported(),
            state.learner.examples_seen,
            state.newest_example_ms,
        )
        state.next_version += 1
        state.learned_since_export = 0
        state.last_export_s = self._clock()
        log.info("candidate_exported", version=state.candidate.version)

    async def _serve(self, version: int, weights: Weights) -> None:
        loaded = kept_loaded(self._state.loaded, version, self._params.keep_versions)
        await self._load(loaded)
        self._state.serving, self._state.serving_weights = version, weights
        self._state.loaded = loaded
        self._m.serving.set(version)

    async def _load(self, versions: Sequence[int]) -> None:
        try:
            await self._triton.load(with_versions(self._config, versions))
        except InferenceError as e:
            # Retried with the batch: the broker redelivers it, nothing was acked.
            raise BackendUnavailable(f"Triton did not load versions {list(versions)}: {e}") from e
        log.info("versions_loaded", model=self._triton.model, versions=list(versions))

    async def _persist(self, announced: list[ModelVersion]) -> None:
        """Announcements first, then the checkpoint (the module docstring)."""
        outgoing = [
            Outgoing(a.model_dump_json(by_alias=True).encode(), {}, a.routing_key())
            for a in announced
        ]
        await send_all([(sink, outgoing) for sink in self._outputs])
        self._state.revision += 1
        await self._checkpoints.commit({self._triton.model: self._state})


def fresh_state(root: Path, model: str, settings: LearnerSettings, now: float) -> TrainerState:
    """A first start: the learner warm-started from the newest version in the repository,
    which is taken to be the serving one."""
    known = repository.versions_in(root, model)
    if not known:
        raise repository.RepositoryError(f"no version of {model} in the model repository {root}")
    newest = known[-1]
    weights = repository.read_weights(root, model, newest)
    return TrainerState(
        learner=OnlineLearner.warm(weights, settings),
        serving=newest,
        serving_weights=weights,
        promoted=newest,
        loaded=(newest,),
        next_version=newest + 1,
        last_export_s=now,
    )


async def build(ctx: StageContext, clock: Callable[[], float] = time.time) -> OnlineTraining:
    """The trainer resumed from its checkpoint (or warm-started), Triton serving what it says."""
    params = OnlineTrainingParams.model_validate(ctx.params)
    if ctx.topics is None or ctx.state_topic is None:
        raise ValueError("online-training needs broker access and a state topic")
    if ctx.ranker is None:
        raise ValueError("online-training needs the ranking model on Triton")
    triton: ModelLoader = ctx.ranker.backend  # type: ignore[assignment]
    root = Path(params.model_repository)
    outputs = [await ctx.topics.sink(topic) for topic in ctx.outputs]
    ctx.closables.extend(outputs)
    checkpoints = KeyedState(
        await ctx.topics.reader(ctx.state_topic, None),
        await ctx.topics.sink(ctx.state_topic),
        CODEC,
        identity=ctx.identity,
        max_entries=1,
        ttl_s=float("inf"),
        metrics=StateMetrics.create(ctx.registry, ctx.pipeline, ctx.name),
    )
    ctx.closables.append(checkpoints)
    await checkpoints.rebuild()
    settings = LearnerSettings(learning_rate=params.learning_rate)
    state = checkpoints.get(triton.model)
    if state is None:
        state = await asyncio.to_thread(fresh_state, root, triton.model, settings, clock())
        log.info("trainer_warm_started", model=triton.model, version=state.serving)
    else:
        on_disk = await asyncio.to_thread(repository.versions_in, root, triton.model)
        # A version written before a crash lost its checkpoint: its number is not reused.
        state.next_version = max([state.next_version, *(v + 1 for v in on_disk)])
        log.info(
            "trainer_resumed",
            model=triton.model,
            serving=state.serving,
            examples_seen=state.learner.examples_seen,
            candidate=state.candidate.version if state.candidate else None,
        )
    _, config = await triton.describe()
    trainer = OnlineTraining(
        params,
        state,
        checkpoints,
        triton,
        config,
        outputs,
        TrainerMetrics(ctx.registry, ctx.pipeline, ctx.name),
        clock,
    )
    await trainer.start()
    return trainer


async def create(ctx: StageContext) -> Stage[TrainingExample]:
    return await build(ctx)


KIND = StageKind(create, TrainingExample, ModelVersion)
