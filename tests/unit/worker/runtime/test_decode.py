from __future__ import annotations

import json

from streamvane_worker.runtime.decode import Malformed, decode, encode
from streamvane_worker.stages.item import ContentItem
from streamvane_worker.stages.recommendation import Engagement


def test_decode_returns_item_when_payload_is_a_valid_content_item() -> None:
    payload = json.dumps({"id": "a", "title": "t", "createdAt": "2024-01-01T00:00:00Z"}).encode()
    item = decode(payload, 1000, ContentItem)
    assert isinstance(item, ContentItem) and item.created_at is not None


def test_decode_names_the_field_when_schema_is_violated() -> None:
    result = decode(json.dumps({"id": "a", "title": 3}).encode(), 1000, ContentItem)
    assert isinstance(result, Malformed) and result.reason == "schema"
    assert "title" in result.detail


def test_decode_reports_oversize_before_parsing_when_payload_is_too_big() -> None:
    assert decode(b"x" * 11, 10, ContentItem) == Malformed(
        "oversize", "11 bytes > maxMessageBytes 10"
    )


def test_encode_round_trips_unknown_fields_when_producer_adds_metadata() -> None:
    item = ContentItem.model_validate({"id": "a", "source": {"crawler": "c1"}})
    assert json.loads(encode(item))["source"] == {"crawler": "c1"}


def test_decode_returns_the_stage_input_model_when_given_an_engagement() -> None:
    payload = json.dumps(
        {"userId": "u", "itemId": "i", "eventType": "like", "eventTime": "2024-01-01T00:00:00Z"}
    ).encode()
    event = decode(payload, 1000, Engagement)
    assert isinstance(event, Engagement) and event.routing_key() == "u"


def test_decode_names_the_field_when_an_engagement_has_an_unknown_event_type() -> None:
    payload = json.dumps(
        {"userId": "u", "itemId": "i", "eventType": "poke", "eventTime": "2024-01-01T00:00:00Z"}
    ).encode()
    result = decode(payload, 1000, Engagement)
    assert isinstance(result, Malformed) and result.reason == "schema"
    assert "eventType" in result.detail
