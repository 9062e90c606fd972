"""The online-training stage with a fake Triton and broker over a real model repository on
disk: warm start, candidates judged on the examples after them, promoted versions written and
loaded, a version trained on inverted labels kept out, checkpoint and resume, pinning."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from streamvane_worker.config import StageType
from streamvane_worker.inference.errors import BackendUnavailable, InferenceFailed
from streamvane_worker.inference.ranker import DENSE_FEATURES, Ranker
from streamvane_worker.io.testing import FakeBroker
from streamvane_worker.stages.base import StageContext, Topics
from streamvane_worker.stages.model_version import ModelVersion
from streamvane_worker.stages.online_training import OnlineTraining, build, with_versions
from streamvane_worker.training import checkpoint, repository
from streamvane_worker.training.examples import TrainingExample
from streamvane_worker.training.export import ranker_graph
from streamvane_worker.training.mlp import Weights

MODEL = "ranker"
DIM = 8
INPUT = "persistent://t/n/examples"
OUTPUT = "persistent://t/n/model-versions"
STATE = "persistent://t/n/trainer-state"
BATCH = 50


class FakeTriton:
    """Records the configs it is asked to load; ``fail`` makes the next load fail."""

    def __init__(self) -> None:
        self.loads: list[list[int]] = []
        self.fail = False

    @property
    def model(self) -> str:
        return MODEL

    async def describe(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {"name": MODEL, "backend": "python", "max_batch_size": 64}

    async def load(self, config: Mapping[str, Any]) -> None:
        if self.fail:
            self.fail = False
            raise InferenceFailed("load failed")
        assert config["backend"] == "python"  # the whole config, not a partial one
        self.loads.append(config["version_policy"]["specific"]["versions"])

    async def infer_at(self, *_: Any) -> Any:
        raise AssertionError("the trainer does not infer")

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with version 1 (random weights) and a python backend file beside it."""
    folder = tmp_path / MODEL / "1"
    folder.mkdir(parents=True)
    (folder / "model.py").write_text("# backend\n")
    weights = Weights.initial(DIM + len(DENSE_FEATURES), 8, np.random.default_rng(1))
    onnx.save_model(ranker_graph(weights, MODEL), str(folder / "model.onnx"))
    return tmp_path


def examples(n: int, seed: int, *, inverted: bool = False) -> list[TrainingExample]:
    """Users engage with items close to them: the label's odds rise with user . item."""
    rng = np.random.default_rng(seed)
    user = rng.normal(size=(n, DIM))
    item = rng.normal(size=(n, DIM))
    p = 1 / (1 + np.exp(-2 * (user * item).sum(1)))
    labels = (rng.random(n) < p).astype(int)
    if inverted:
        labels = 1 - labels
    return [
        TrainingExample(
            label=int(labels[i]),
            ts=1_700_000_000_000 + i,
            features={
                "user": user[i].tolist(),
                "item": item[i].tolist(),
                **{f: float(rng.random()) for f in DENSE_FEATURES},
            },
        )
        for i in range(n)
    ]


def context(broker: FakeBroker, triton: FakeTriton, repo: Path, **params: Any) -> StageContext:
    return StageContext(
        "train",
        StageType.ONLINE_TRAINING,
        {
            "modelRepository": str(repo),
            "exportEveryExamples": 500,
            "evaluationExamples": 300,
            "learningRate": 0.01,
            **params,
        },
        None,
        pipeline="p",
        topics=Topics(reader=broker.reader, sink=broker.sink),
        state_topic=STATE,
        identity="r1",
        ranker=Ranker(triton),
        input_topic=INPUT,
        outputs=(OUTPUT,),
    )


async def feed(stage: OnlineTraining, items: list[TrainingExample]) -> None:
    for start in range(0, len(items), BATCH):
        result = await stage.process(items[start : start + BATCH])
        assert not result.errors and not result.outputs


def announced(broker: FakeBroker) -> list[ModelVersion]:
    return [ModelVersion.model_validate_json(r.payload) for r in broker.log(OUTPUT)]


async def test_a_better_candidate_is_written_loaded_and_announced_and_a_worse_one_kept_out(
    repo: Path,
) -> None:
    broker, triton = FakeBroker(), FakeTriton()
    stage = await build(context(broker, triton, repo), Clock())
    assert stage.state.serving == 1 and triton.loads == [[1]]

    await feed(stage, examples(800, seed=2))  # candidate 2 at 500, judged on the next 300
    (first,) = announced(broker)
    assert first.version == 2 and first.promoted and first.serving_version == 2
    assert first.auc is not None and first.serving_auc is not None
    assert first.auc > first.serving_auc + 0.1  # learned the taste; version 1 is random
    assert first.window == 300 and first.examples_learned == 500
    assert triton.loads[-1] == [1, 2]
    served = ort.InferenceSession(str(repo / MODEL / "2" / "model.onnx"))
    assert (repo / MODEL / "2" / "model.py").read_text() == "# backend\n"
    assert [i.name for i in served.get_inputs()] == ["user", "item", "dense"]

    # 700 inverted examples: candidate 3 (exported at 1000 learned) has learned from 200 of
    # them and is judged on the next 300, clean again; serving (2) learned none.
    await feed(stage, examples(200, seed=3) + examples(700, seed=4, inverted=True))
    await feed(stage, examples(300, seed=5))
    worse = [a for a in announced(broker)[1:] if not a.promoted]
    assert worse and worse[0].serving_version == 2 and "worse than serving" in worse[0].reason
    assert not (repo / MODEL / str(worse[0].version)).exists()


async def test_a_restart_resumes_from_the_checkpoint_instead_of_starting_over(
    repo: Path,
) -> None:
    broker, triton = FakeBroker(), FakeTriton()
    stage = await build(context(broker, triton, repo), Clock())
    await feed(stage, examples(1100, seed=2))
    before = stage.state
    assert before.candidate is not None  # candidate 3 under evaluation

    again = await build(context(broker, FakeTriton(), repo), Clock())
    after = again.state
    assert after.learner.examples_seen == before.learner.examples_seen == 1100
    assert after.serving == before.serving == 2
    assert after.candidate is not None and after.candidate.version == before.candidate.version
    assert after.candidate.labels == before.candidate.labels
    np.testing.assert_array_equal(after.learner.weights.w1, before.learner.weights.w1)
    assert after.learner.optimizer.step == before.learner.optimizer.step


async def test_a_version_number_written_before_a_lost_checkpoint_is_not_reused(
    repo: Path,
) -> None:
    broker = FakeBroker()
    await build(context(broker, FakeTriton(), repo), Clock())
    stray = Weights.initial(DIM + len(DENSE_FEATURES), 8, np.random.default_rng(9))
    repository.write_version(repo, MODEL, 7, stray)
    again = await build(context(broker, FakeTriton(), repo), Clock())
    assert again.state.next_version == 8


async def test_pinning_serves_the_pinned_version_freezes_the_guard_and_unpinning_resumes(
    repo: Path,
) -> None:
    broker, triton = FakeBroker(), FakeTriton()
    stage = await build(context(broker, triton, repo), Clock())
    await feed(stage, examples(1000, seed=2))  # version 2 promoted, version 3 under evaluation
    assert stage.state.serving == 2 and stage.state.candidate is not None

    pinned = await build(context(broker, triton, repo, pinnedVersion=1), Clock())
    assert pinned.state.serving == 1 and triton.loads[-1] == [2, 1]
    pin = announced(broker)[-1]
    assert pin.serving_version == 1 and "pinned" in pin.reason
    assert pinned.state.candidate is None  # the one under evaluation is dropped
    learned = pinned.state.learner.examples_seen
    await feed(pinned, examples(1600, seed=6))
    # The learner learns; nothing is exported or judged: the pin stays the newest announcement.
    assert pinned.state.learner.examples_seen == learned + 1600
    assert pinned.state.candidate is None and announced(broker)[-1] == pin

    unpinned = await build(context(broker, triton, repo), Clock())
    assert unpinned.state.serving == 2
    assert "pin removed" in announced(broker)[-1].reason
    await feed(unpinned, examples(BATCH, seed=7))
    assert unpinned.state.candidate is not None  # overdue: exported at the first batch


async def test_pinning_a_version_not_in_the_repository_names_the_versions_there(
    repo: Path,
) -> None:
    with pytest.raises(repository.RepositoryError, match=r"version 5 is not in .*\[1\]"):
        await build(context(FakeBroker(), FakeTriton(), repo, pinnedVersion=5), Clock())


async def test_examples_without_the_ranker_features_are_errors_and_the_rest_learned(
    repo: Path,
) -> None:
    stage = await build(context(FakeBroker(), FakeTriton(), repo), Clock())
    good = examples(3, seed=2)
    bad = TrainingExample(label=1, ts=1, features={"other": 1.0})
    result = await stage.process([good[0], bad, good[1]])
    assert [(e.index, e.reason) for e in result.errors] == [(1, "features-mismatch")]
    assert stage.state.learner.examples_seen == 2


async def test_a_failed_load_leaves_the_state_as_it_was_and_the_batch_is_retried(
    repo: Path,
) -> None:
    broker, triton = FakeBroker(), FakeTriton()
    stage = await build(context(broker, triton, repo), Clock())
    items = examples(800, seed=2)
    await feed(stage, items[:750])
    seen = stage.state.learner.examples_seen
    triton.fail = True
    with pytest.raises(BackendUnavailable):
        await stage.process(items[750:])
    assert stage.state.learner.examples_seen == seen and stage.state.serving == 1
    await stage.process(items[750:])  # redelivered
    assert stage.state.serving == 2


def test_the_checkpoint_encoding_refuses_other_payloads() -> None:
    with pytest.raises(ValueError, match="not a trainer checkpoint"):
        checkpoint.decode(b"{}")


def test_the_loaded_config_keeps_the_served_one_and_names_the_versions() -> None:
    config = {"name": MODEL, "backend": "python", "version_policy": {"latest": {}}}
    assert with_versions(config, [2, 3]) == {
        "name": MODEL,
        "backend": "python",
        "version_policy": {"specific": {"versions": [2, 3]}},
    }
