"""Input payload -> the stage's input message model, or the reason it is malformed (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError

from streamvane_worker.stages.message import Message

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Malformed:
    reason: str
    """Short machine-readable reason: ``oversize``, ``not-json`` or ``schema``."""
    detail: str


def decode(payload: bytes, max_bytes: int, model: type[M]) -> M | Malformed:
    if len(payload) > max_bytes:
        return Malformed("oversize", f"{len(payload)} bytes > maxMessageBytes {max_bytes}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return Malformed("not-json", str(e)[:500])
    try:
        return model.model_validate(data)
    except ValidationError as e:
        return Malformed("schema", _summary(e))


def _summary(error: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in error.errors()[:5]
    ]
    return "; ".join(parts)[:500]


def encode(message: Message) -> bytes:
    return message.model_dump_json(by_alias=True, exclude_none=True).encode()
