"""W3C trace context carried in message properties (``traceparent``)."""

from __future__ import annotations

import re
import secrets

TRACEPARENT = "traceparent"
_PATTERN = re.compile(r"^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$")


def child_traceparent(parent: str | None) -> str:
    """This stage's span: same trace id as the input's (a new trace if it had none)."""
    match = _PATTERN.match(parent or "")
    trace_id, flags = (match.group(1), match.group(2)) if match else (secrets.token_hex(16), "01")
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def trace_id(traceparent: str) -> str:
    return traceparent.split("-")[1]
