"""W3C trace context carried in message properties (``traceparent``)."""

from __future__ import annotations

import random
import re

TRACEPARENT = "traceparent"
_PATTERN = re.compile(r"^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$")


def child_traceparent(parent: str | None) -> str:
    """This stage's span: same trace id as the input's (a new trace if it had none)."""
    match = _PATTERN.match(parent or "")
    trace_id, flags = (match.group(1), match.group(2)) if match else (_hex(128), "01")
    return f"00-{trace_id}-{_hex(64)}-{flags}"


def _hex(bits: int) -> str:
    # Ids need to be unique, not secret: the urandom behind `secrets` costs more per message.
    return f"{random.getrandbits(bits) or 1:0{bits // 4}x}"


def trace_id(traceparent: str) -> str:
    return traceparent.split("-")[1]
