from __future__ import annotations

import pytest

from streamvane_operator.pulsar.entries import EntryMalformed, entry_payloads


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _message(payload: bytes, key: str) -> bytes:
    """SingleMessageMetadata (properties, partition_key, payload_size, event_time) + payload."""
    prop = b"\x0a\x01a\x12\x01b"  # KeyValue{key: "a", value: "b"}
    metadata = (
        b"\x0a"
        + _varint(len(prop))
        + prop
        + b"\x12"
        + _varint(len(key))
        + key.encode()
        + b"\x18"
        + _varint(len(payload))
        + b"\x28"
        + _varint(1_764_633_600_000)
    )
    return len(metadata).to_bytes(4, "big") + metadata + payload


def test_entry_payloads_splits_a_batch_in_publish_order_when_it_holds_several_messages() -> None:
    payloads = [b'{"n": 0}', b"", b'{"n": 2}' * 40]
    body = b"".join(_message(p, f"k{i}") for i, p in enumerate(payloads))
    assert entry_payloads(body, 3) == payloads


def test_entry_payloads_raises_when_the_body_is_shorter_than_announced() -> None:
    body = _message(b'{"n": 0}', "k")
    with pytest.raises(EntryMalformed):
        entry_payloads(body, 2)
