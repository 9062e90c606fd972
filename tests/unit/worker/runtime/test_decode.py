from __future__ import annotations

import json
import random

import pytest

from streamvane_worker.runtime import decode as decode_module
from streamvane_worker.runtime.decode import Limits, Malformed, decode, encode
from streamvane_worker.stages.item import ContentItem
from streamvane_worker.stages.recommendation import Engagement

LIMITS = Limits(max_bytes=1000)


def test_decode_returns_item_when_payload_is_a_valid_content_item() -> None:
    payload = json.dumps({"id": "a", "title": "t", "createdAt": "2024-01-01T00:00:00Z"}).encode()
    item = decode(payload, LIMITS, ContentItem)
    assert isinstance(item, ContentItem) and item.created_at is not None


def test_decode_names_the_field_when_schema_is_violated() -> None:
    result = decode(json.dumps({"id": "a", "title": 3}).encode(), LIMITS, ContentItem)
    assert isinstance(result, Malformed) and result.reason == "schema"
    assert "title" in result.detail


def test_decode_reports_oversize_before_parsing_when_payload_is_too_big() -> None:
    assert decode(b"x" * 11, Limits(max_bytes=10), ContentItem) == Malformed(
        "oversize", "11 bytes > maxMessageBytes 10"
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "too-deep"),  # json.loads: RecursionError
        (b'{"id": "a", "title": "t", "x": ' + b"[" * 40 + b"]" * 40 + b"}", "too-deep"),
        (b'{"id": "a", "title": "t", "n": ' + b"7" * 5000 + b"}", "number-too-large"),
        (b'{"id": "a", "title": "t", "n": -' + b"7" * 65 + b"}", "number-too-large"),
        (b'{"id": "a", "title": "\\ud800"}', "invalid-string"),
        (b'{"id": "a", "meta": {"\\udfff": 1}, "title": "t"}', "invalid-string"),
        (b'{"id": "a", "title": "\xed\xa0\x80"}', "invalid-string"),  # raw UTF-8 surrogate
        (b'{"id": "a", "title": "t", "score": NaN}', "not-json"),
        (b"\xff\xfe", "not-json"),
    ],
)
def test_decode_dead_letters_hostile_payload_when_it_breaks_a_limit(
    payload: bytes, reason: str
) -> None:
    result = decode(payload, Limits(max_bytes=1_000_000), ContentItem)
    assert isinstance(result, Malformed), result
    assert result.reason == reason


def test_decode_keeps_surrogate_pairs_when_they_encode_a_valid_character() -> None:
    item = decode(b'{"id": "a", "title": "\\ud83d\\ude00 cat"}', LIMITS, ContentItem)
    assert isinstance(item, ContentItem) and item.title == "\U0001f600 cat"
    assert encode(item)


def test_decode_accepts_nesting_up_to_the_limit_when_many_brackets_are_in_strings() -> None:
    payload = json.dumps({"id": "a", "title": "[" * 50, "x": [[[[1]]]]}).encode()
    assert isinstance(
        decode(payload, Limits(max_bytes=1000, max_depth=5), ContentItem), ContentItem
    )


_PIECES = [
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b":",
    b",",
    b"\\ud800",
    b"\\u0000",
    b"\xed\xa0\x80",
    b"\xff",
    b"9" * 80,
    b"NaN",
    b"-",
    b"1e999",
    b'"id"',
    b'"title"',
    b"null",
    b" ",
]


def test_decode_never_raises_and_encodes_whatever_it_accepts_when_given_random_bytes() -> None:
    rng = random.Random(20261201)
    for _ in range(3000):
        body = b"".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 30)))
        for candidate in (body, b'{"id": "a", "title": "t", "x": ' + body + b"}"):
            result = decode(candidate, LIMITS, ContentItem)
            if isinstance(result, ContentItem):
                encode(result)


def test_decode_gives_the_checked_answer_when_pydantic_parses_the_payload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(20261204)
    valid = [
        json.dumps({"id": f"i{n}", "title": "t" * n, "createdAt": "2024-01-01T00:00:00Z"}).encode()
        for n in range(5)
    ]
    bodies = [b"".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 30))) for _ in range(2000)]
    payloads = [*valid, *(b'{"id": "a", "title": "t", "x": ' + body + b"}" for body in bodies)]
    fast = [decode(p, LIMITS, ContentItem) for p in payloads]
    # Every payload looks risky: all take the checked path.
    monkeypatch.setattr(decode_module, "_plain", lambda *_: False)
    checked = [decode(p, LIMITS, ContentItem) for p in payloads]
    assert fast == checked
    assert sum(isinstance(r, ContentItem) for r in fast) > len(valid)


def test_encode_round_trips_unknown_fields_when_producer_adds_metadata() -> None:
    item = ContentItem.model_validate({"id": "a", "source": {"crawler": "c1"}})
    assert json.loads(encode(item))["source"] == {"crawler": "c1"}


def test_decode_returns_the_stage_input_model_when_given_an_engagement() -> None:
    payload = json.dumps(
        {"userId": "u", "itemId": "i", "eventType": "like", "eventTime": "2024-01-01T00:00:00Z"}
    ).encode()
    event = decode(payload, LIMITS, Engagement)
    assert isinstance(event, Engagement) and event.routing_key() == "u"


def test_decode_names_the_field_when_an_engagement_has_an_unknown_event_type() -> None:
    payload = json.dumps(
        {"userId": "u", "itemId": "i", "eventType": "poke", "eventTime": "2024-01-01T00:00:00Z"}
    ).encode()
    result = decode(payload, LIMITS, Engagement)
    assert isinstance(result, Malformed) and result.reason == "schema"
    assert "eventType" in result.detail
