"""A label head: label-examples' training pairs, and tagging scored by a served head."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from streamvane_worker.config import StageType, TaggingParams
from streamvane_worker.inference.ranker import DENSE_FEATURES, ITEM, USER, Ranker
from streamvane_worker.inference.testing import FakeRankerServer, fake_embedder
from streamvane_worker.io.testing import FakeBroker
from streamvane_worker.stages import create_stage
from streamvane_worker.stages.base import ItemError
from streamvane_worker.stages.item import ContentItem, Tag
from streamvane_worker.stages.label_examples import label_problem, labelled_examples
from streamvane_worker.stages.label_head import pair_rows
from streamvane_worker.stages.model_version import ModelVersion
from streamvane_worker.training.examples import TrainingExample

from .recs import T0, context

LABELS = [
    {"name": "cats", "description": "cats purring on a sofa"},
    {"name": "cars", "description": "fast cars on a race track"},
    {"name": "food", "description": "cooking pasta at home"},
]
EXAMPLES = "persistent://t/heads/examples"
VERSIONS = "persistent://t/heads/versions"


def test_pair_rows_pair_every_item_with_every_label_item_major() -> None:
    items = np.arange(6, dtype=np.float32).reshape(2, 3)
    labels = -np.arange(9, dtype=np.float32).reshape(3, 3)
    user, item, dense = pair_rows(items, labels)
    assert user.shape == item.shape == (6, 3) and dense.shape == (6, len(DENSE_FEATURES))
    np.testing.assert_array_equal(user[:3], np.repeat(items[:1], 3, axis=0))
    np.testing.assert_array_equal(item[3:], labels)
    assert not dense.any()


def test_each_label_is_one_example_positive_only_for_the_items_own_tags() -> None:
    vector = np.ones(4, np.float32)
    labels = [(n, np.full(4, k, np.float32)) for k, n in enumerate(["a", "b", "c"])]
    examples = labelled_examples("item-1", vector, {"b"}, labels, 1.0, 7)
    assert [(e.features[ITEM][0], e.label, e.sample_rate) for e in examples] == [
        (0.0, 0, 1.0),
        (1.0, 1, 1.0),
        (2.0, 0, 1.0),
    ]
    assert all(e.features[USER] == [1.0] * 4 and e.ts == 7 for e in examples)
    again = labelled_examples("item-1", vector, {"b"}, labels, 1.0, 8)
    assert [e.id for e in again] == [e.id for e in examples]  # a redelivery repeats the ids
    assert len({e.id for e in examples}) == 3


def test_negatives_are_down_sampled_by_id_with_the_rate_recorded_and_positives_all_kept() -> None:
    labels = [(f"l{k}", np.zeros(2, np.float32)) for k in range(10)]
    examples = [
        e
        for n in range(200)
        for e in labelled_examples(f"i{n}", np.ones(2, np.float32), {"l0"}, labels, 0.3, 0)
    ]
    positives = [e for e in examples if e.label]
    negatives = [e for e in examples if not e.label]
    assert len(positives) == 200 and {e.sample_rate for e in positives} == {1.0}
    assert {e.sample_rate for e in negatives} == {0.3}
    assert 0.25 < len(negatives) / 1800 < 0.35


def test_items_without_tags_or_with_tags_outside_the_labels_cannot_be_learned() -> None:
    names = {"a", "b"}
    assert label_problem(3, set(), names) == ItemError(
        3, "unlabelled", "item has no tags: its labels are its tags' names"
    )
    unknown = label_problem(4, {"a", "z"}, names)
    assert unknown is not None and unknown.index == 4 and unknown.reason == "unknown-label"
    assert "'z'" in unknown.detail
    assert label_problem(0, {"a"}, names) is None


async def test_label_examples_writes_its_pairs_and_reports_what_it_cannot_learn() -> None:
    broker = FakeBroker()
    ctx = replace(
        context(broker, StageType.LABEL_EXAMPLES, {"labels": LABELS}),
        embedder=await fake_embedder(),
        outputs=(EXAMPLES,),
    )
    stage = await create_stage(ctx)
    items = [
        ContentItem(id="c1", title="a cat asleep", tags=[Tag(name="cats", score=1)]),
        ContentItem(id="none", title="no tags"),
        ContentItem(id="odd", title="a boat", tags=[Tag(name="boats", score=1)]),
    ]
    result = await stage.process(items)
    assert sorted((e.index, e.reason) for e in result.errors) == [
        (1, "unlabelled"),
        (2, "unknown-label"),
    ]
    written = [TrainingExample.model_validate_json(r.payload) for r in broker.log(EXAMPLES)]
    assert [(e.item_id, e.label) for e in written] == [("c1", 1), ("c1", 0), ("c1", 0)]


def test_a_head_model_needs_classifier_mode_and_versions_need_a_head_model() -> None:
    with pytest.raises(ValueError, match="needs mode: classifier"):
        TaggingParams.model_validate({"labels": LABELS, "headModel": "h"})
    with pytest.raises(ValueError, match="set headModel"):
        TaggingParams.model_validate({"labels": LABELS, "modelVersionsTopic": "v"})


async def test_tagging_with_a_head_model_scores_with_the_announced_version_and_records_it() -> None:
    broker, server = FakeBroker(), FakeRankerServer(served={1, 2})
    announced = ModelVersion(
        model=server.model,
        version=2,
        promoted=True,
        serving_version=2,
        reason="test",
        announced_at=T0,
    )
    broker.publish(VERSIONS, server.model, announced.model_dump_json(by_alias=True).encode())
    params = {
        "labels": LABELS,
        "mode": "classifier",
        "headModel": server.model,
        "modelVersionsTopic": VERSIONS,
        "topK": 1,
    }
    ctx = replace(
        context(broker, StageType.TAGGING, params),
        embedder=await fake_embedder(),
        model_server=lambda name: Ranker(server),
    )
    stage = await create_stage(ctx)
    items = [ContentItem(id=label["name"], title=label["description"]) for label in LABELS]
    outputs = (await stage.process(items)).outputs
    tagged = [outputs[i] for i in range(len(items))]
    # The fake head scores user · item: each item is tagged with the label it describes.
    assert [t.tags[0].name for t in tagged if t.tags] == [label["name"] for label in LABELS]
    assert {(t.stages[-1].model, t.stages[-1].model_version) for t in tagged} == {
        (server.model, "2")
    }
    assert server.asked == [2, 2] and server.calls == [8, 1]  # 9 pairs in two calls of at most 8
