from __future__ import annotations

import numpy as np

from streamvane_worker.config import StageType
from streamvane_worker.inference.testing import FakeBackend, fake_embedder
from streamvane_worker.stages import StageContext, create_stage
from streamvane_worker.stages.item import ContentItem, Decision
from streamvane_worker.stages.safety import Thresholds, verdict

LABELS = {
    "labels": [
        {"name": "cooking", "description": "cooking recipe kitchen food"},
        {"name": "sports", "description": "football match goal team"},
        {"name": "music", "description": "song concert guitar band"},
    ],
    "topK": 2,
}
SAFETY = {
    "categories": [
        {
            "name": "violence",
            "description": "fight weapon attack blood",
            "reviewThreshold": 0.3,
            "blockThreshold": 0.6,
        }
    ]
}


async def _stage(stage_type: StageType, params: object = None, backend: FakeBackend | None = None):
    embedder = await fake_embedder(backend)
    return await create_stage(StageContext("s", stage_type, params or {}, embedder))


def _items(*titles: str) -> list[ContentItem]:
    return [ContentItem(id=f"i{n}", title=t) for n, t in enumerate(titles)]


async def test_text_embedding_adds_normalized_vector_and_provenance_when_item_has_text() -> None:
    stage = await _stage(StageType.TEXT_EMBEDDING)
    result = await stage.process(_items("a cat", "a dog"))
    assert result.errors == []
    out = result.outputs[1]
    assert out.id == "i1" and out.embedding is not None
    assert np.isclose(np.linalg.norm(out.embedding.vector), 1.0, atol=1e-5)
    record = out.stages[-1]
    assert (record.model, record.model_version, record.batch_size) == ("fake-model", "7", 2)
    assert record.inference_ms is not None


async def test_text_embedding_reports_item_error_when_item_has_no_text() -> None:
    stage = await _stage(StageType.TEXT_EMBEDDING)
    result = await stage.process([ContentItem(id="empty"), *_items("ok")])
    assert [(e.index, e.reason) for e in result.errors] == [(0, "no-text")]
    assert list(result.outputs) == [1]


async def test_tagging_ranks_the_label_sharing_words_first_when_item_matches_it() -> None:
    stage = await _stage(StageType.TAGGING, LABELS)
    result = await stage.process(_items("football match with a late goal"))
    tags = result.outputs[0].tags
    assert tags is not None and len(tags) == 2
    assert tags[0].name == "sports" and tags[0].score >= tags[1].score


async def test_tagging_reuses_upstream_embedding_when_item_has_one() -> None:
    backend = FakeBackend()
    embedding_stage = await _stage(StageType.TEXT_EMBEDDING, backend=backend)
    embedded = (await embedding_stage.process(_items("song at a concert"))).outputs[0]
    tagging = await _stage(StageType.TAGGING, LABELS, backend=backend)
    calls = len(backend.calls)
    result = await tagging.process([embedded])
    assert len(backend.calls) == calls
    out = result.outputs[0]
    assert out.tags is not None and out.tags[0].name == "music"
    assert out.embedding == embedded.embedding
    assert [r.stage_type for r in out.stages] == ["text-embedding", "tagging"]
    assert out.stages[-1].inference_ms is None


async def test_safety_blocks_item_when_score_reaches_block_threshold() -> None:
    stage = await _stage(StageType.SAFETY, SAFETY)
    result = await stage.process(_items("fight weapon attack blood", "a quiet garden"))
    assert result.outputs[0].safety is not None and result.outputs[1].safety is not None
    assert result.outputs[0].safety.decision == Decision.BLOCK
    assert result.outputs[1].safety.decision == Decision.ALLOW


def test_verdict_reviews_when_score_between_thresholds() -> None:
    result = verdict(np.array([0.5], dtype=np.float32), [Thresholds("spam", 0.2, 0.8)])
    assert (result.decision, result.flagged) == (Decision.REVIEW, ["spam"])


async def test_passthrough_forwards_item_unchanged_apart_from_provenance() -> None:
    stage = await create_stage(StageContext("s", StageType.PASSTHROUGH, {}, embedder=None))
    item = ContentItem.model_validate({"id": "x", "title": "t", "custom": {"a": 1}})
    out = (await stage.process([item])).outputs[0]
    assert out.model_dump(exclude={"stages"}) == item.model_dump(exclude={"stages"})
    assert out.stages[0].model is None
