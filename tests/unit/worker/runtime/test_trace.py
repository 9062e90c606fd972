from __future__ import annotations

from streamvane_worker.runtime.trace import child_traceparent, trace_id


def test_child_traceparent_keeps_trace_id_when_parent_is_valid() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    child = child_traceparent(parent)
    assert trace_id(child) == "0af7651916cd43dd8448eb211c80319c" and child != parent


def test_child_traceparent_starts_a_trace_when_parent_is_missing_or_invalid() -> None:
    assert len(trace_id(child_traceparent(None))) == 32
    assert len(trace_id(child_traceparent("garbage"))) == 32
