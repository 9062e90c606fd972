from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from streamvane_worker.config import HnswParams, StageType
from streamvane_worker.io.testing import FakeBroker
from streamvane_worker.stages import create_stage
from streamvane_worker.stages.candidate_retrieval import ItemIndex
from streamvane_worker.stages.catalogue import CatalogueItem
from streamvane_worker.stages.item import Decision
from streamvane_worker.stages.recommendation import Candidates, UserProfile

from .recs import CATALOGUE, T0, axis, catalogue_item, context

PARAMS: dict[str, Any] = {"catalogueTopic": CATALOGUE, "topK": 3}


def _item(
    item_id: str, k: int, other: int | None = None, decision: Decision | None = None
) -> CatalogueItem:
    return CatalogueItem(item_id, np.asarray(axis(k, other), dtype=np.float32), decision)


def _index(*items: CatalogueItem) -> ItemIndex:
    index = ItemIndex(HnswParams(), frozenset({Decision.BLOCK}))
    for item in items:
        index.upsert(item)
    return index


def _q(k: int) -> np.ndarray:
    return np.asarray(axis(k), dtype=np.float32)


def test_query_ranks_the_nearest_item_first_when_items_differ_in_similarity() -> None:
    index = _index(_item("near", 0), _item("mid", 0, 1), _item("far", 2))
    found = index.query(_q(0), 3, set())
    assert [i for i, _ in found] == ["near", "mid", "far"]
    assert found[0][1] == np.float32(1.0) or abs(found[0][1] - 1.0) < 1e-5


def test_query_never_returns_an_item_when_it_is_safety_blocked() -> None:
    index = _index(_item("ok", 1), _item("bad", 0, decision=Decision.BLOCK))
    assert [i for i, _ in index.query(_q(0), 5, set())] == ["ok"]


def test_query_drops_an_item_when_its_update_blocks_it() -> None:
    index = _index(_item("a", 0), _item("b", 1))
    index.upsert(_item("a", 0, decision=Decision.BLOCK))
    assert [i for i, _ in index.query(_q(0), 5, set())] == ["b"]


def test_query_follows_an_item_when_its_embedding_changes() -> None:
    index = _index(_item("a", 0), _item("b", 1))
    index.upsert(_item("a", 2))
    item_id, score = index.query(_q(2), 1, set())[0]
    assert item_id == "a" and abs(score - 1.0) < 1e-5 and len(index) == 2


def test_query_stops_returning_an_item_when_it_is_deleted_and_again_when_re_added() -> None:
    index = _index(_item("a", 0), _item("b", 1))
    index.delete("a")
    assert [i for i, _ in index.query(_q(0), 5, set())] == ["b"]
    index.upsert(_item("a", 0))
    assert index.query(_q(0), 1, set())[0][0] == "a" and len(index) == 2


def test_query_still_returns_k_items_when_the_nearest_ones_are_excluded_as_seen() -> None:
    index = _index(*(_item(f"i{k}", k) for k in range(6)))
    found = index.query(_q(0), 3, {"i0", "i1"})
    assert len(found) == 3 and not {"i0", "i1"} & {i for i, _ in found}


def test_index_grows_past_its_initial_capacity_when_many_items_are_added() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1500, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = ItemIndex(HnswParams(), frozenset())
    for n, v in enumerate(vectors):
        index.upsert(CatalogueItem(f"i{n}", v, None))
    assert len(index) == 1500 and index.query(vectors[1234], 1, set())[0][0] == "i1234"


def test_snapshot_restores_the_same_answers_when_loaded(tmp_path: Path) -> None:
    index = _index(_item("a", 0), _item("b", 1), _item("c", 2))
    index.delete("b")
    index.save(tmp_path, b"pos")
    loaded = ItemIndex.load(tmp_path, HnswParams(), frozenset({Decision.BLOCK}))
    assert loaded is not None
    restored, position = loaded
    assert position == b"pos" and len(restored) == 2
    assert restored.query(_q(1), 5, set()) == index.query(_q(1), 5, set())


def test_snapshot_is_ignored_when_the_index_params_changed(tmp_path: Path) -> None:
    _index(_item("a", 0)).save(tmp_path, None)
    assert ItemIndex.load(tmp_path, HnswParams(m=8), frozenset()) is None


def _profile(user: str, k: int, recent: list[str] | None = None) -> UserProfile:
    return UserProfile(
        user_id=user,
        vector=axis(k),
        strength=1.0,
        recent_items=recent or [],
        event_count=1,
        version=1,
        updated_at=T0,
    )


def _broker() -> FakeBroker:
    broker = FakeBroker()
    for k in range(5):
        broker.publish(CATALOGUE, f"i{k}", catalogue_item(f"i{k}", axis(k)))
    broker.publish(CATALOGUE, "blocked", catalogue_item("blocked", axis(0), "block"))
    return broker


async def test_stage_emits_top_k_unseen_unblocked_candidates_when_a_profile_arrives() -> None:
    stage = await create_stage(context(_broker(), StageType.CANDIDATE_RETRIEVAL, PARAMS))
    out = (await stage.process([_profile("u", 0, recent=["i0"])])).outputs[0]
    assert isinstance(out, Candidates) and out.user_id == "u" and out.index_size == 5
    ids = [c.item_id for c in out.items]
    assert len(ids) == 3 and "i0" not in ids and "blocked" not in ids


async def test_stage_follows_a_deletion_when_a_tombstone_is_published() -> None:
    broker = _broker()
    stage = await create_stage(context(broker, StageType.CANDIDATE_RETRIEVAL, PARAMS))
    broker.publish(CATALOGUE, "i1", b"")
    await stage._catalogue.catch_up()  # what the follower task does, without waiting for it
    out = (await stage.process([_profile("u", 1)])).outputs[0]
    assert isinstance(out, Candidates) and "i1" not in [c.item_id for c in out.items]


async def test_restarted_stage_reads_only_what_followed_its_snapshot_when_one_exists(
    tmp_path: Path,
) -> None:
    broker = _broker()
    params = PARAMS | {"snapshotDir": str(tmp_path)}
    await create_stage(context(broker, StageType.CANDIDATE_RETRIEVAL, params))
    broker.publish(CATALOGUE, "new", catalogue_item("new", axis(7)))
    # Were the records before the snapshot read again, these tombstones would empty the index.
    log = broker.log(CATALOGUE)
    log[:6] = [replace(r, payload=b"") for r in log[:6]]
    restarted = await create_stage(context(broker, StageType.CANDIDATE_RETRIEVAL, params))
    out = (await restarted.process([_profile("u", 7)])).outputs[0]
    assert isinstance(out, Candidates) and out.items[0].item_id == "new" and out.index_size == 6


async def test_stage_emits_no_candidates_when_the_profile_has_no_interest() -> None:
    stage = await create_stage(context(_broker(), StageType.CANDIDATE_RETRIEVAL, PARAMS))
    empty = _profile("u", 0).model_copy(update={"strength": 0.0})
    out = (await stage.process([empty])).outputs[0]
    assert isinstance(out, Candidates) and out.items == []
