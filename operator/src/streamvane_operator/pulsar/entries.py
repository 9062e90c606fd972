"""The payloads of one Pulsar entry as the admin API's examinemessage returns it (pure).

A producer's batch is one entry: the broker sends its uncompressed body, each message as a
4-byte big-endian size, that many bytes of ``SingleMessageMetadata`` (protobuf) and the
payload, whose size is the metadata's field 3 (``payload_size``). Only protobuf's wire format
is read here, not the schema (the operator does not import pulsar-client).
"""

from __future__ import annotations

PAYLOAD_SIZE_FIELD = 3
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class EntryMalformed(ValueError):
    """The body is not the batch the headers announced."""


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data) or shift > 63:
            raise EntryMalformed("truncated varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def payload_size(metadata: bytes) -> int:
    """``SingleMessageMetadata.payload_size``, skipping every other field."""
    at = 0
    while at < len(metadata):
        key, at = _varint(metadata, at)
        field, wire = key >> 3, key & 7
        if wire == VARINT:
            value, at = _varint(metadata, at)
            if field == PAYLOAD_SIZE_FIELD:
                return value
        elif wire == LENGTH:
            length, at = _varint(metadata, at)
            at += length
        elif wire in (FIXED64, FIXED32):
            at += 8 if wire == FIXED64 else 4
        else:
            raise EntryMalformed(f"unknown protobuf wire type {wire}")
    raise EntryMalformed("single message metadata without payload_size")


def entry_payloads(body: bytes, count: int) -> list[bytes]:
    """The ``count`` payloads of a batch entry, in publish order."""
    payloads = []
    at = 0
    for _ in range(count):
        size = int.from_bytes(body[at : at + 4], "big")
        metadata = body[at + 4 : at + 4 + size]
        if len(metadata) != size:
            raise EntryMalformed("truncated single message metadata")
        at += 4 + size
        length = payload_size(metadata)
        payloads.append(body[at : at + length])
        at += length
    return payloads
