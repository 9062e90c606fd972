from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from streamvane_worker.config import StageType, UserProfileParams
from streamvane_worker.io.errors import PulsarUnavailable
from streamvane_worker.io.testing import FakeBroker, FakeSink
from streamvane_worker.stages import create_stage
from streamvane_worker.stages.keyed_state import StateUnavailable
from streamvane_worker.stages.recommendation import Engagement, UserProfile
from streamvane_worker.stages.user_profile import (
    EMPTY,
    apply,
    decode_state,
    encode_state,
    profile,
)

from .recs import CATALOGUE, STATE, T0, axis, catalogue_item, context, engagement

PARAMS: dict[str, Any] = {"catalogueTopic": CATALOGUE, "halfLifeS": 3600}


def _event(**fields: Any) -> Engagement:
    return Engagement.model_validate(engagement(**fields))


def _vec(k: int) -> np.ndarray:
    return np.asarray(axis(k), dtype=np.float32)


def test_apply_halves_an_old_interest_when_one_half_life_passed() -> None:
    params = UserProfileParams.model_validate(PARAMS | {"dwellWeight": 0})
    first = apply(EMPTY, _event(user="u", item="a", event="like"), _vec(0), params)
    assert first is not None
    second = apply(first, _event(user="u", item="b", event="like", seconds=3600), _vec(1), params)
    assert second is not None
    assert second.total[0] == pytest.approx(1.5) and second.total[1] == pytest.approx(3.0)


def test_apply_gives_the_same_state_when_a_late_event_arrives_out_of_order() -> None:
    params = UserProfileParams.model_validate(PARAMS)
    a = _event(user="u", item="a", event="view", dwell_ms=10_000)
    b = _event(user="u", item="b", event="share", seconds=1800)
    in_order = apply(apply(EMPTY, a, _vec(0), params), b, _vec(1), params)  # type: ignore[arg-type]
    late = apply(apply(EMPTY, b, _vec(1), params), a, _vec(0), params)  # type: ignore[arg-type]
    assert in_order is not None and late is not None
    np.testing.assert_allclose(in_order.total, late.total, rtol=1e-5)


def test_apply_moves_away_from_an_item_when_it_is_skipped() -> None:
    params = UserProfileParams.model_validate(PARAMS)
    state = apply(EMPTY, _event(user="u", item="a", event="skip", dwell_ms=60_000), _vec(0), params)
    assert state is not None and state.total[0] == pytest.approx(-1.0)


def test_apply_returns_none_when_the_engagement_was_already_applied() -> None:
    params = UserProfileParams.model_validate(PARAMS)
    event = _event(user="u", item="a")
    state = apply(EMPTY, event, _vec(0), params)
    assert state is not None and apply(state, event, _vec(0), params) is None


def test_apply_keeps_recent_items_bounded_and_most_recent_first_when_history_is_full() -> None:
    params = UserProfileParams.model_validate(PARAMS | {"historySize": 2})
    state = EMPTY
    for n, item in enumerate(["a", "b", "a", "c"]):
        state = apply(state, _event(user="u", item=item, seconds=n), _vec(n), params) or state
    assert [item for item, _ in state.recent] == ["c", "a"]


def test_apply_orders_recent_items_by_event_time_when_events_arrive_out_of_order() -> None:
    params = UserProfileParams.model_validate(PARAMS | {"historySize": 3})
    events = [_event(user="u", item=item, seconds=n) for n, item in enumerate("abcab")]
    results = []
    for order in (events, events[::-1], [events[2], events[0], events[4], events[1], events[3]]):
        state = EMPTY
        for event in order:
            state = apply(state, event, _vec(0), params) or state
        results.append([item for item, _ in state.recent])
    assert results == [["b", "a", "c"]] * 3


def test_state_codec_round_trips_when_encoded_and_decoded() -> None:
    params = UserProfileParams.model_validate(PARAMS)
    state = apply(EMPTY, _event(user="u", item="a"), _vec(3), params)
    assert state is not None
    back = decode_state(encode_state(state))
    np.testing.assert_array_equal(back.total, state.total)
    assert (back.at, back.version, back.recent, back.seen_events) == (
        state.at,
        state.version,
        state.recent,
        state.seen_events,
    )


def test_decode_state_raises_value_error_when_payload_is_not_a_state() -> None:
    with pytest.raises(ValueError):
        decode_state(b'{"total": 3}')


def test_profile_is_a_unit_vector_when_the_user_has_interests() -> None:
    params = UserProfileParams.model_validate(PARAMS)
    state = apply(EMPTY, _event(user="u", item="a", event="like"), _vec(5), params)
    assert state is not None
    out = profile("u", state)
    assert out.vector[5] == pytest.approx(1.0) and out.strength > 1


async def _stage(broker: FakeBroker, identity: str = "r1", **params: Any) -> Any:
    return await create_stage(context(broker, StageType.USER_PROFILE, PARAMS | params, identity))


def _broker_with_items(*ids: str) -> FakeBroker:
    broker = FakeBroker()
    for n, item_id in enumerate(ids):
        broker.publish(CATALOGUE, item_id, catalogue_item(item_id, axis(n)))
    return broker


async def test_stage_emits_a_profile_per_engagement_when_items_are_in_the_catalogue() -> None:
    stage = await _stage(_broker_with_items("a", "b"))
    result = await stage.process(
        [_event(user="u", item="a"), _event(user="u", item="b", seconds=1)]
    )
    assert not result.errors
    first, second = result.outputs[0], result.outputs[1]
    assert isinstance(first, UserProfile) and isinstance(second, UserProfile)
    assert (first.version, second.version) == (1, 2)
    assert second.recent_items == ["b", "a"]


async def test_stage_dead_letters_an_engagement_when_its_item_is_not_in_the_catalogue() -> None:
    stage = await _stage(_broker_with_items("a"))
    result = await stage.process([_event(user="u", item="zzz")])
    assert [e.reason for e in result.errors] == ["unknown-item"] and not result.outputs


async def test_stage_finds_an_item_when_it_was_published_after_the_stage_started() -> None:
    broker = _broker_with_items("a")
    stage = await _stage(broker)
    broker.publish(CATALOGUE, "late", catalogue_item("late", axis(9)))
    result = await stage.process([_event(user="u", item="late")])
    assert not result.errors and result.outputs[0].vector[9] == pytest.approx(1.0)  # type: ignore[attr-defined]


async def test_stage_checkpoints_each_changed_user_when_a_batch_is_processed() -> None:
    broker = _broker_with_items("a")
    stage = await _stage(broker)
    await stage.process([_event(user="u", item="a"), _event(user="v", item="a", seconds=1)])
    assert sorted(r.key for r in broker.log(STATE) if r.key) == ["u", "v"]


async def test_restarted_stage_continues_from_the_checkpoint_when_state_topic_has_it() -> None:
    broker = _broker_with_items("a", "b")
    first = await _stage(broker)
    await first.process([_event(user="u", item="a")])
    second = await _stage(broker, identity="r2")
    out = (await second.process([_event(user="u", item="b", seconds=1)])).outputs[0]
    assert isinstance(out, UserProfile) and out.version == 2 and out.recent_items == ["b", "a"]


async def test_restarted_stage_applies_a_redelivered_engagement_once_when_it_was_checkpointed() -> (
    None
):
    broker = _broker_with_items("a")
    event = _event(user="u", item="a")
    before = (await (await _stage(broker)).process([event])).outputs[0]
    again = (await (await _stage(broker, identity="r2")).process([event])).outputs[0]
    assert again == before


async def test_stage_takes_over_a_user_when_another_replica_checkpointed_it_since_start() -> None:
    broker = _broker_with_items("a", "b")
    mine, other = await _stage(broker, identity="r1"), await _stage(broker, identity="r2")
    await other.process([_event(user="u", item="a")])
    out = (await mine.process([_event(user="u", item="b", seconds=1)])).outputs[0]
    assert isinstance(out, UserProfile) and out.version == 2


async def test_stage_raises_and_keeps_the_old_state_when_the_checkpoint_fails() -> None:
    broker = _broker_with_items("a")
    sinks: list[FakeSink] = []

    async def sink(topic: str) -> FakeSink:
        sinks.append(await broker.sink(topic))
        return sinks[-1]

    stage = await create_stage(context(broker, StageType.USER_PROFILE, PARAMS, sink=sink))
    sinks[0].fail_with.append(PulsarUnavailable("down"))
    with pytest.raises(StateUnavailable):
        await stage.process([_event(user="u", item="a")])
    out = (await stage.process([_event(user="u", item="a")])).outputs[0]
    assert isinstance(out, UserProfile) and out.version == 1


def test_engagement_identity_differs_when_the_event_time_differs() -> None:
    a = _event(user="u", item="a")
    later = (T0 + timedelta(milliseconds=1)).isoformat()
    b = Engagement.model_validate(engagement("u", "a") | {"eventTime": later})
    assert a.identity() != b.identity()
