from __future__ import annotations

import json

from streamvane_worker.io.base import Record
from streamvane_worker.io.testing import FakeBroker
from streamvane_worker.stages.catalogue import Catalogue, CatalogueItem, ItemVectors, parse
from streamvane_worker.stages.item import Decision

from .recs import CATALOGUE, axis, catalogue_item


def _record(key: str | None, payload: bytes) -> Record:
    return Record(key, payload, b"0")


def test_parse_returns_the_deleted_id_when_the_record_is_a_tombstone() -> None:
    assert parse(_record("item-1", b"")) == "item-1"


def test_parse_skips_a_record_when_the_item_has_no_embedding_or_is_not_an_item() -> None:
    assert parse(_record("a", json.dumps({"id": "a", "title": "t"}).encode())) is None
    assert parse(_record("a", b"{not json")) is None


def test_parse_returns_a_unit_vector_and_the_decision_when_the_item_is_enriched() -> None:
    doubled = [2 * x for x in axis(4)]
    item = parse(_record("a", json.dumps(catalogue_item("a", doubled, "review")).encode()))
    assert isinstance(item, CatalogueItem) and item.decision == Decision.REVIEW
    assert abs(float(item.vector[4]) - 1.0) < 1e-6


async def test_catch_up_applies_upserts_and_deletes_in_order_and_counts_skips() -> None:
    broker = FakeBroker()
    broker.publish(CATALOGUE, "a", catalogue_item("a", axis(0)))
    broker.publish(CATALOGUE, "b", catalogue_item("b", axis(1)))
    broker.publish(CATALOGUE, "a", b"")
    broker.publish(CATALOGUE, "c", b"garbage")
    vectors = ItemVectors()
    catalogue = Catalogue(await broker.reader(CATALOGUE, None), vectors)
    assert await catalogue.catch_up() == 4
    assert set(vectors.vectors) == {"b"} and catalogue.skipped == 1
    assert catalogue.position == broker.log(CATALOGUE)[-1].position
