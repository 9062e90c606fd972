"""user-profile: engagements -> a decayed interest vector per user, plus recent history.

A user's state is the weighted sum of the embeddings of the items they engaged with, each
weight decayed by half every ``halfLifeS`` seconds of event time, so the profile is the same
whatever order or delay engagements are processed in. An engagement weighs its type's
``eventWeights`` entry plus, for any type but skip, ``dwellWeight`` scaled by its dwell up to
``dwellCapMs``. Item embeddings come from the catalogue (the content pipeline's output).

State is keyed by user id (the input's Key_Shared key) and checkpointed to the state topic
before the profile is emitted (see ``keyed_state``). Each state remembers the identities of
its last engagements, so a redelivered engagement is applied once: its profile is re-emitted
unchanged. An engagement of an item the catalogue does not hold is dead-lettered.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from streamvane_worker.config import EventWeights, UserProfileParams
from streamvane_worker.inference.backend import EMBEDDING_DIM, EmbeddingArray
from streamvane_worker.stages.base import ItemError, Stage, StageContext, StageKind, StageResult
from streamvane_worker.stages.catalogue import Catalogue, ItemVectors
from streamvane_worker.stages.following import Following
from streamvane_worker.stages.keyed_state import Codec, KeyedState, StateMetrics
from streamvane_worker.stages.message import Message
from streamvane_worker.stages.recommendation import Engagement, EventType, UserProfile
from streamvane_worker.stages.vector import Vector

REMEMBERED_EVENTS = 256
"""Engagement identities kept per user to recognise redeliveries."""
VECTOR_DECIMALS = 7


@dataclass(frozen=True)
class ProfileState:
    total: EmbeddingArray
    """Decayed weighted sum of item embeddings, as of ``at``."""
    at: datetime
    events: int
    version: int
    recent: tuple[tuple[str, datetime], ...]
    """Recently engaged items with the event time of their latest engagement, most recent
    first (ties by item id): the same whatever order the events were applied in."""
    seen_events: tuple[str, ...]
    """Identities of the last applied engagements, most recent first."""


EMPTY = ProfileState(
    total=np.zeros(EMBEDDING_DIM, dtype=np.float32),
    at=datetime.fromtimestamp(0, UTC),
    events=0,
    version=0,
    recent=(),
    seen_events=(),
)


def weight(
    event: Engagement, weights: EventWeights, dwell_weight: float, dwell_cap_ms: int
) -> float:
    base = float(getattr(weights, event.event_type.value))
    if event.event_type == EventType.SKIP:
        return base
    return base + dwell_weight * min(event.dwell_ms, dwell_cap_ms) / dwell_cap_ms


def apply(
    state: ProfileState, event: Engagement, vector: EmbeddingArray, params: UserProfileParams
) -> ProfileState | None:
    """The state after ``event``, or None when it was already applied (pure)."""
    identity = event.identity()
    if identity in state.seen_events:
        return None
    w = weight(event, params.event_weights, params.dwell_weight, params.dwell_cap_ms)
    gap_s = (event.event_time - state.at).total_seconds()
    if gap_s >= 0:  # decay what we had to the event's time, then add it at full weight
        total = state.total * np.float32(0.5 ** (gap_s / params.half_life_s)) + w * vector
        at = event.event_time
    else:  # a late event: added already decayed to the state's time
        total = state.total + np.float32(w * 0.5 ** (-gap_s / params.half_life_s)) * vector
        at = state.at
    recent = state.recent
    if event.event_type != EventType.IMPRESSION:
        latest = max([event.event_time, *(at for item, at in recent if item == event.item_id)])
        others = [(item, at) for item, at in recent if item != event.item_id]
        recent = tuple(sorted([(event.item_id, latest), *others], key=_newest_first))
    return ProfileState(
        total=total.astype(np.float32),
        at=at,
        events=state.events + 1,
        version=state.version + 1,
        recent=recent[: params.history_size],
        seen_events=(identity, *state.seen_events)[:REMEMBERED_EVENTS],
    )


def _newest_first(entry: tuple[str, datetime]) -> tuple[float, str]:
    return (-entry[1].timestamp(), entry[0])


def profile(user_id: str, state: ProfileState) -> UserProfile:
    strength = float(np.linalg.norm(state.total))
    unit = state.total / strength if strength > 0 else state.total
    return UserProfile(
        user_id=user_id,
        vector=Vector(np.round(unit, VECTOR_DECIMALS)),
        strength=round(strength, 6),
        recent_items=[item for item, _ in state.recent],
        event_count=state.events,
        version=state.version,
        updated_at=state.at,
    )


def encode_state(state: ProfileState) -> bytes:
    return json.dumps(
        {
            "total": base64.b64encode(state.total.astype("<f4").tobytes()).decode(),
            "at": state.at.isoformat(),
            "events": state.events,
            "version": state.version,
            "recent": [[item, at.isoformat()] for item, at in state.recent],
            "seenEvents": list(state.seen_events),
        }
    ).encode()


def decode_state(payload: bytes) -> ProfileState:
    """Raises ValueError for a payload that is not a profile state."""
    try:
        data = json.loads(payload)
        total = np.frombuffer(base64.b64decode(data["total"]), dtype="<f4").astype(np.float32)
        if total.shape != (EMBEDDING_DIM,):
            raise ValueError(f"state vector has {total.size} values, not {EMBEDDING_DIM}")
        return ProfileState(
            total=total,
            at=datetime.fromisoformat(data["at"]),
            events=int(data["events"]),
            version=int(data["version"]),
            recent=tuple((str(item), datetime.fromisoformat(at)) for item, at in data["recent"]),
            seen_events=tuple(data["seenEvents"]),
        )
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a profile state: {e}") from e


CODEC: Codec[ProfileState] = Codec(encode_state, decode_state, lambda s: s.version)


class UserProfileStage:
    def __init__(
        self,
        params: UserProfileParams,
        state: KeyedState[ProfileState],
        catalogue: Catalogue,
        items: ItemVectors,
    ) -> None:
        self._params = params
        self._state = state
        self._catalogue = catalogue
        self._items = items
        # Batches are processed concurrently by the runtime; state updates must not interleave.
        self._updating = asyncio.Lock()

    async def process(self, items: list[Engagement]) -> StageResult:
        async with self._updating:
            await self._state.catch_up()
            if any(e.item_id not in self._items.vectors for e in items):
                await self._catalogue.catch_up()
            changed: dict[str, ProfileState] = {}
            after: dict[int, ProfileState] = {}
            errors: list[ItemError] = []
            for i, event in enumerate(items):
                vector = self._items.vectors.get(event.item_id)
                if vector is None:
                    errors.append(
                        ItemError(
                            i, "unknown-item", f"item {event.item_id!r} is not in the catalogue"
                        )
                    )
                    continue
                user = event.user_id
                current = changed.get(user) or self._state.get(user) or EMPTY
                updated = apply(current, event, vector, self._params)
                if updated is not None:
                    changed[user] = current = updated
                after[i] = current
            await self._state.commit(changed)
        outputs: dict[int, Message] = {i: profile(items[i].user_id, s) for i, s in after.items()}
        return StageResult(outputs=outputs, errors=errors)


async def create(ctx: StageContext) -> Stage[Engagement]:
    params = UserProfileParams.model_validate(ctx.params)
    if ctx.topics is None or ctx.state_topic is None:
        raise ValueError("user-profile needs broker access and a state topic")
    items = ItemVectors()
    catalogue = Catalogue(await ctx.topics.reader(params.catalogue_topic, None), items)
    state = KeyedState(
        await ctx.topics.reader(ctx.state_topic, None),
        await ctx.topics.sink(ctx.state_topic),
        CODEC,
        identity=ctx.identity,
        max_entries=params.max_users,
        ttl_s=params.user_ttl_s,
        metrics=StateMetrics.create(ctx.registry, ctx.pipeline, ctx.name),
    )
    ctx.closables.append(state)
    await catalogue.catch_up()
    await state.rebuild()
    ctx.closables.append(Following(catalogue))
    return UserProfileStage(params, state, catalogue, items)


KIND = StageKind(create, Engagement, UserProfile)
