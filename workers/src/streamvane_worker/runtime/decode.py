"""Input payload -> the stage's input message model, or the reason it is malformed (pure).

Any payload is data: whatever the bytes, ``decode`` returns a message or a ``Malformed`` reason,
never raises. Limits keep hostile payloads cheap and keep the later steps (validation, the
stage, encoding the result) from failing on them:

- ``oversize``: more than ``maxMessageBytes``, checked before parsing;
- ``not-json``: not UTF-8 JSON, or JSON with ``NaN`` / ``Infinity``;
- ``too-deep``: arrays/objects nested more than ``maxNestingDepth`` (``json.loads`` itself
  raises ``RecursionError`` near 1,000 levels);
- ``number-too-large``: an integer of more than ``maxNumberDigits`` digits (``int()`` refuses
  more than 4,300 digits, and the model has no use for them);
- ``invalid-string``: a lone UTF-16 surrogate (``"\\ud800"``) in any string or key, which
  cannot be encoded again as UTF-8;
- ``schema``: not the stage's input message model.

The expensive checks run only when a cheap scan of the bytes says they could fail: the bracket
count bounds the depth, and a surrogate can only come from a ``\\uD800``-``\\uDFFF`` escape or its
(invalid, but accepted by ``json``) raw UTF-8 form. A payload that scan clears (no long digit
run, no ``NaN`` / ``Infinity`` either) is parsed and validated in one step by pydantic's own JSON
parser (an item with its 384-float embedding: 44 vs 104 us); anything that step refuses takes
the checked path, which names the reason.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from streamvane_worker.stages.message import Message

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Malformed:
    reason: str
    """Short machine-readable reason (see the module docstring)."""
    detail: str


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 1_048_576
    max_depth: int = 32
    max_number_digits: int = 64


_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.malformed = Malformed(reason, detail)


def decode(payload: bytes, limits: Limits, model: type[M]) -> M | Malformed:
    try:
        return _decode(payload, limits, model)
    except _Rejected as e:
        return e.malformed
    except Exception as e:  # noqa: BLE001 - any payload is data: never fail the batch
        return Malformed("undecodable", f"{type(e).__name__}: {e}"[:500])


@functools.cache
def _decoder(max_number_digits: int) -> json.JSONDecoder:
    """One decoder per limit: ``json.loads`` with hooks builds a new one per call, which cost
    more than parsing a small message."""
    return json.JSONDecoder(
        parse_int=functools.partial(_integer, max_digits=max_number_digits),
        parse_constant=_constant,
    )


def _decode(payload: bytes, limits: Limits, model: type[M]) -> M | Malformed:
    if len(payload) > limits.max_bytes:
        return Malformed("oversize", f"{len(payload)} bytes > maxMessageBytes {limits.max_bytes}")
    if _plain(payload, limits):
        try:
            return model.model_validate_json(payload)
        except ValidationError:
            pass  # not JSON, or not the model: the checked path says which
    return _decode_checked(payload, limits, model)


_DIGITS_AS_ZEROS = bytes.maketrans(b"123456789", b"000000000")


def _plain(payload: bytes, limits: Limits) -> bool:
    """True when nothing only the checked path handles can be in the payload: nesting over
    the limit, ``NaN`` / ``Infinity`` (pydantic's parser accepts them), surrogates, or a digit
    run long enough to be an integer over the limit. Substring tests: a regex costs more than
    the parse."""
    if _brackets(payload) > limits.max_depth or b"NaN" in payload or b"Infinity" in payload:
        return False
    if (b"\\u" in payload or b"\xed" in payload) and _SURROGATE.search(payload):
        return False
    return b"0" * (limits.max_number_digits + 1) not in payload.translate(_DIGITS_AS_ZEROS)


def _brackets(payload: bytes) -> int:
    """An upper bound of the nesting depth."""
    return payload.count(b"[") + payload.count(b"{")


def _decode_checked(payload: bytes, limits: Limits, model: type[M]) -> M | Malformed:
    try:
        # As json.loads reads bytes: UTF-8, -16 or -32 by the first bytes.
        text = payload.decode(json.detect_encoding(payload), "surrogatepass")
        data = _decoder(limits.max_number_digits).decode(text)
    except RecursionError:
        raise _Rejected(
            "too-deep", f"nested deeper than maxNestingDepth {limits.max_depth}"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return Malformed("not-json", str(e)[:500])
    surrogates = _SURROGATE.search(payload) is not None
    if _brackets(payload) > limits.max_depth or surrogates:
        _check_tree(data, limits.max_depth, strings=surrogates)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        return Malformed("schema", _summary(e))


def _integer(text: str, max_digits: int) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > max_digits:
        raise _Rejected(
            "number-too-large", f"integer of {digits} digits > maxNumberDigits {max_digits}"
        )
    return int(text)


def _constant(name: str) -> float:
    raise _Rejected("not-json", f"{name} is not JSON")


def _check_tree(data: Any, max_depth: int, *, strings: bool) -> None:
    """Depth of nested containers and, if asked, UTF-8 validity of every string (iterative)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                raise _Rejected("too-deep", f"nested deeper than maxNestingDepth {max_depth}")
            children = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in children:
                if strings and isinstance(key, str):
                    _check_string(key)
                stack.append((child, depth + 1))
        elif strings and isinstance(value, str):
            _check_string(value)


def _check_string(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _Rejected("invalid-string", f"lone surrogate in a string: {e.reason}") from e


def _summary(error: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in error.errors()[:5]
    ]
    return "; ".join(parts)[:500]


def encode(message: Message) -> bytes:
    return message.model_dump_json(by_alias=True, exclude_none=True).encode()
