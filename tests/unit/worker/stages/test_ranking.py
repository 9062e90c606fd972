from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from streamvane_worker.config import StageType
from streamvane_worker.inference.backend import EMBEDDING_DIM
from streamvane_worker.inference.errors import ModelMismatch
from streamvane_worker.inference.ranker import DENSE_FEATURES, Ranker, check_ranker
from streamvane_worker.inference.testing import FakeRankerServer
from streamvane_worker.io.testing import FakeBroker
from streamvane_worker.runtime.decode import encode
from streamvane_worker.stages import create_stage
from streamvane_worker.stages.model_version import ModelVersion
from streamvane_worker.stages.recommendation import Candidates, Recommendations
from streamvane_worker.stages.vector import Float32

from .recs import CATALOGUE, T0, axis, catalogue_item, context

PARAMS: dict[str, Any] = {"catalogueTopic": CATALOGUE, "topK": 2}


def _candidates(user: str, scores: dict[str, float], vector: list[float]) -> Candidates:
    profile = {
        "userId": user,
        "vector": vector,
        "strength": 2.5,
        "recentItems": [],
        "eventCount": 4,
        "version": 9,
        "updatedAt": T0.isoformat(),
    }
    return Candidates.model_validate(
        {
            "userId": user,
            "profile": profile,
            "items": [{"itemId": i, "score": s} for i, s in scores.items()],
            "indexSize": 10,
            "retrievedAt": T0.isoformat(),
        }
    )


async def _stage(broker: FakeBroker, server: FakeRankerServer) -> Any:
    ranker = Ranker(server)
    await ranker.start()
    ctx = replace(context(broker, StageType.RANKING, PARAMS), ranker=ranker)
    return await create_stage(ctx)


def _catalogue(broker: FakeBroker) -> None:
    for item_id, k, decision in [
        ("a", 0, None),
        ("b", 1, "review"),
        ("c", 2, None),
        ("bad", 0, "block"),
    ]:
        broker.publish(CATALOGUE, item_id, catalogue_item(item_id, axis(k), decision))


async def test_ranking_orders_candidates_by_model_score_when_retrieval_ordered_them_otherwise() -> (
    None
):
    broker, server = FakeBroker(), FakeRankerServer()
    _catalogue(broker)
    stage = await _stage(broker, server)

    message = _candidates("u", {"c": 0.9, "a": 0.2, "b": 0.1}, axis(0, 1))
    (out,) = (await stage.process([message])).outputs.values()

    assert isinstance(out, Recommendations)
    assert [r.item_id for r in out.items] == ["a", "b"], "user·item first, topK 2"
    assert out.model.name == "fake-ranker" and out.model.version == "3"
    assert out.profile_version == 9 and out.candidates_scored == 3


async def test_ranking_logs_the_exact_rows_the_model_saw_when_it_emits_recommendations() -> None:
    broker, server = FakeBroker(), FakeRankerServer()
    _catalogue(broker)
    stage = await _stage(broker, server)

    (out,) = (await stage.process([_candidates("u", {"b": 0.5}, axis(1))])).outputs.values()

    (seen,) = server.seen
    (ranked,) = out.items
    logged = json.loads(encode(out))
    wire = Float32(EMBEDDING_DIM)
    assert np.array_equal(wire.validate(logged["userFeatures"]).array, seen["user"][0])
    assert isinstance(logged["items"][0]["features"]["item"], str), "base64 float32"
    item = wire.validate(logged["items"][0]["features"]["item"]).array
    assert np.array_equal(item, seen["item"][0])
    dense = logged["items"][0]["features"]["dense"]
    assert list(dense) == list(DENSE_FEATURES)
    assert np.array_equal(np.asarray(list(dense.values()), np.float32), seen["dense"][0])
    assert dense["review"] == 1.0 and dense["retrievalScore"] == pytest.approx(0.5)
    assert dense["logProfileStrength"] == pytest.approx(np.log1p(2.5), rel=1e-6)
    assert dense["logProfileEvents"] == pytest.approx(np.log1p(4), rel=1e-6)
    assert ranked.score == pytest.approx(1.0 + 0.05, rel=1e-6)


async def test_ranking_never_recommends_an_item_when_it_is_blocked_or_deleted() -> None:
    broker, server = FakeBroker(), FakeRankerServer()
    _catalogue(broker)
    stage = await _stage(broker, server)
    message = _candidates("u", {"a": 0.9, "bad": 0.8, "c": 0.7}, axis(0))
    first = (await stage.process([message])).outputs[0]
    assert [r.item_id for r in first.items] == ["a", "c"], "blocked from the start: never ranked"

    broker.publish(CATALOGUE, "a", b"")  # deleted
    broker.publish(CATALOGUE, "c", catalogue_item("c", axis(2), "block"))  # blocked later

    async def ranked() -> list[str]:
        out = (await stage.process([message])).outputs[0]
        assert isinstance(out, Recommendations)
        return [r.item_id for r in out.items]

    deadline = asyncio.get_running_loop().time() + 5
    while await ranked() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)  # the catalogue is followed by a background task
    assert await ranked() == []


async def test_ranking_splits_rows_to_the_model_batch_size_when_a_batch_has_many_candidates() -> (
    None
):
    broker, server = FakeBroker(), FakeRankerServer(max_batch_size=4)
    _catalogue(broker)
    stage = await _stage(broker, server)

    messages = [_candidates(f"u{n}", {"a": 0.1, "b": 0.2, "c": 0.3}, axis(n)) for n in range(3)]
    result = await stage.process(messages)

    assert server.calls == [4, 4, 1]
    assert [len(r.items) for r in result.outputs.values()] == [2, 2, 2]


async def test_ranking_emits_no_items_when_no_candidate_is_in_the_catalogue() -> None:
    broker, server = FakeBroker(), FakeRankerServer()
    stage = await _stage(broker, server)

    (out,) = (await stage.process([_candidates("u", {"gone": 0.9}, axis(0))])).outputs.values()

    assert out.items == [] and out.candidates_scored == 0 and server.calls == []


def test_check_ranker_names_the_tensor_when_the_served_model_is_not_a_ranker() -> None:
    metadata = {
        "inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]}],
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}],
    }
    with pytest.raises(ModelMismatch, match="missing input 'user'.*unexpected inputs"):
        check_ranker(metadata, {"max_batch_size": 64}, "all-minilm-l6-v2")


VERSIONS = "persistent://t/recs/model-versions"


def _announcement(model: str, version: int, serving: int, promoted: bool = True) -> bytes:
    return (
        ModelVersion(
            model=model,
            version=version,
            promoted=promoted,
            serving_version=serving,
            reason="test",
            announced_at=T0,
        )
        .model_dump_json(by_alias=True)
        .encode()
    )


async def _versioned_stage(broker: FakeBroker, server: FakeRankerServer) -> tuple[Any, Ranker]:
    ranker = Ranker(server)
    await ranker.start()
    params = {**PARAMS, "modelVersionsTopic": VERSIONS}
    ctx = replace(context(broker, StageType.RANKING, params), ranker=ranker)
    return await create_stage(ctx), ranker


async def test_ranking_asks_for_the_newest_announced_version_and_records_it_when_one_was_read() -> (
    None
):
    broker, server = FakeBroker(), FakeRankerServer(served={1, 2})
    _catalogue(broker)
    broker.publish(VERSIONS, "fake-ranker", _announcement("fake-ranker", 1, 1))
    broker.publish(VERSIONS, "other", _announcement("other", 9, 9))
    broker.publish(VERSIONS, "fake-ranker", _announcement("fake-ranker", 2, 2))
    broker.publish(VERSIONS, "fake-ranker", _announcement("fake-ranker", 3, 2, promoted=False))
    broker.publish(VERSIONS, "junk", b"not json")
    stage, _ = await _versioned_stage(broker, server)

    (out,) = (await stage.process([_candidates("u", {"a": 0.5}, axis(0))])).outputs.values()

    assert server.asked == [2], "the serving version of the newest announcement, not 3 or 9"
    assert out.model.version == "2"


async def test_ranking_switches_version_when_a_rollback_is_announced_while_it_runs() -> None:
    broker, server = FakeBroker(), FakeRankerServer(served={1, 2})
    _catalogue(broker)
    broker.publish(VERSIONS, "fake-ranker", _announcement("fake-ranker", 2, 2))
    stage, ranker = await _versioned_stage(broker, server)
    message = _candidates("u", {"a": 0.5}, axis(0))
    assert (await stage.process([message])).outputs[0].model.version == "2"

    broker.publish(VERSIONS, "fake-ranker", _announcement("fake-ranker", 1, 1))
    deadline = asyncio.get_running_loop().time() + 5
    while ranker.choice.announced != 1 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)  # the topic is followed by a background task

    assert (await stage.process([message])).outputs[0].model.version == "1"


async def test_ranking_falls_back_to_the_version_that_served_when_triton_refuses_the_announced_one() -> (
    None
):
    broker, server = FakeBroker(), FakeRankerServer(served={1})
    _catalogue(broker)
    broker.publish(VERSIONS, "fake-ranker", _announcement("fake-ranker", 1, 1))
    stage, ranker = await _versioned_stage(broker, server)
    message = _candidates("u", {"a": 0.5, "c": 0.2}, axis(0))
    assert (await stage.process([message])).outputs[0].model.version == "1"

    ranker.announce(2)  # announced, but this Triton has not loaded it
    result = await stage.process([message])

    assert result.errors == [] and result.outputs[0].model.version == "1"
    assert server.asked[1:] == [2, 1], "refused once, then the previous version"
    await stage.process([message])
    assert server.asked[3:] == [1], "the refused version is left alone for a while"


async def test_ranking_uses_triton_default_when_no_announced_version_is_served() -> None:
    broker, server = FakeBroker(), FakeRankerServer(served={3})
    _catalogue(broker)
    broker.publish(VERSIONS, "fake-ranker", _announcement("fake-ranker", 4, 4))
    stage, _ = await _versioned_stage(broker, server)

    (out,) = (await stage.process([_candidates("u", {"a": 0.5}, axis(0))])).outputs.values()

    assert server.asked == [4, None] and out.model.version == "3"
