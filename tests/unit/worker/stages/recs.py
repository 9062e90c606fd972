"""Builders shared by the recommendation stage tests: catalogue items and engagements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from streamvane_worker.inference.backend import EMBEDDING_DIM
from streamvane_worker.io.testing import FakeBroker
from streamvane_worker.stages.base import StageContext, Topics

CATALOGUE = "persistent://t/content/enriched"
STATE = "persistent://t/recs/state"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def axis(k: int, other: int | None = None) -> list[float]:
    """Unit vector along axis ``k`` (or halfway between ``k`` and ``other``)."""
    v = np.zeros(EMBEDDING_DIM, dtype=np.float32)
    v[k] = 1.0
    if other is not None:
        v[other] = 1.0
    return (v / np.linalg.norm(v)).tolist()


def catalogue_item(
    item_id: str, vector: list[float], decision: str | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id,
        "title": item_id,
        "embedding": {"vector": vector, "model": "m", "modelVersion": "1"},
    }
    if decision:
        item["safety"] = {"decision": decision, "scores": {}, "flagged": []}
    return item


def engagement(
    user: str, item: str, event: str = "like", seconds: float = 0, **extra: Any
) -> dict[str, Any]:
    return {
        "userId": user,
        "itemId": item,
        "eventType": event,
        "eventTime": (T0 + timedelta(seconds=seconds)).isoformat(),
        **extra,
    }


def context(
    broker: FakeBroker,
    stage_type: Any,
    params: dict[str, Any],
    identity: str = "r1",
    sink: Callable[[str], Awaitable[Any]] | None = None,
) -> StageContext:
    return StageContext(
        "s",
        stage_type,
        params,
        None,
        pipeline="p",
        topics=Topics(reader=broker.reader, sink=sink or broker.sink),
        state_topic=STATE,
        identity=identity,
    )
