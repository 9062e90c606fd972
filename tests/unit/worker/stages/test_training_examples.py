from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamvane_worker.config import StageType, TrainingExamplesParams
from streamvane_worker.inference.backend import EMBEDDING_DIM
from streamvane_worker.inference.ranker import DENSE_FEATURES
from streamvane_worker.io.errors import PulsarUnavailable
from streamvane_worker.io.testing import FakeBroker, FakeSink
from streamvane_worker.stages import REGISTRY
from streamvane_worker.stages.base import OutputUnavailable, StageContext, Topics
from streamvane_worker.stages.recommendation import Engagement, Recommendations
from streamvane_worker.stages.training_examples import (
    LATE_REASON_PROPERTY,
    Joined,
    TrainingExamplesStage,
    Watermark,
    build,
    close,
    decode_state,
    encode_state,
    example_id,
    join,
    kept,
    ms,
    serve,
    served,
)
from streamvane_worker.training.examples import FeatureLayout, TrainingExample

from .recs import STATE, T0, axis, engagement

INPUT = "persistent://t/recs/recommendations"
OUTPUT = "persistent://t/recs/examples"
LATE = "persistent://t/recs/p-s-late"
WINDOW_S = 60.0
PARAMS = TrainingExamplesParams(engagements_topic="engagements", window_seconds=WINDOW_S)
SAMPLED = PARAMS.model_copy(update={"negative_sample_rate": 0.5})
SHOWN = PARAMS.model_copy(update={"negatives": "shown"})


def _recs(request: str, items: list[str], seconds: float = 0, user: str = "u") -> Recommendations:
    return Recommendations.model_validate(
        {
            "userId": user,
            "items": [
                {
                    "itemId": item,
                    "score": 0.5,
                    "retrievalScore": 0.25 + n / 100,
                    "features": {
                        "item": axis(n % EMBEDDING_DIM, (n + 1) % EMBEDDING_DIM),
                        "dense": {f: 0.1 * (k + 1) + n for k, f in enumerate(DENSE_FEATURES)},
                    },
                }
                for n, item in enumerate(items)
            ],
            "model": {"name": "recs-ranker", "version": "3"},
            "userFeatures": (np.arange(EMBEDDING_DIM, dtype=np.float32) / 1000).tolist(),
            "profileVersion": 1,
            "requestId": request,
            "candidatesScored": len(items),
            "rankedAt": (T0 + timedelta(seconds=seconds)).isoformat(),
        }
    )


def _event(item: str, seconds: float, request: str | None = "r", **fields: Any) -> Engagement:
    return Engagement.model_validate(
        engagement("u", item, seconds=seconds, requestId=request, **fields)
    )


def test_join_yields_a_positive_with_the_logged_features_when_a_like_answers_the_item() -> None:
    recs = _recs("r", ["a", "b"])
    request = served(recs, "r", int(WINDOW_S * 1000))
    joined = join(request, _event("b", 5, eventType="like"), PARAMS)
    assert joined.example is not None and joined.late is None and joined.request is not None
    example = joined.example
    assert (example.label, example.item_id, example.request_id, example.user_id) == (
        1, "b", "r", "u"
    )  # fmt: skip
    assert example.id == example_id("r", "b") and example.model_version == "3"
    assert example.ts == ms(T0 + timedelta(seconds=5))
    assert example.features["user"] == recs.user_features.tolist()
    assert example.features["item"] == recs.items[1].features.item.tolist()
    for name, value in recs.items[1].features.dense.items():
        assert example.features[name] == value
    layout = FeatureLayout.of(example.features)
    assert layout.cross_width == EMBEDDING_DIM and layout.scalars == DENSE_FEATURES
    assert [s.positive for s in joined.request.items] == [False, True]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (dict(item="a", seconds=61), "after-window"),
        (dict(item="zzz", seconds=5), "item-not-served"),
        (dict(item="a", seconds=5, request=None), "unknown-request"),
    ],
)
def test_join_names_the_late_reason_when_the_engagement_joins_nothing(
    event: dict[str, Any], reason: str
) -> None:
    request = served(_recs("r", ["a"]), "r", int(WINDOW_S * 1000))
    engaged = _event(**event)
    assert join(request if engaged.request_id else None, engaged, PARAMS).late == reason


def test_serve_joins_the_engagements_that_came_first_when_the_list_arrives_late() -> None:
    early = join(None, _event("a", 5, eventType="like"), PARAMS).request
    assert early is not None and not early.served
    early = join(early, _event("zzz", 6), PARAMS).request
    assert early is not None and len(early.waiting) == 2
    assert join(early, _event("a", 5, eventType="like"), PARAMS) == Joined()  # redelivered
    opened = serve(_recs("r", ["a", "b"]), "r", early, PARAMS)
    assert opened is not None and opened.request.served and not opened.request.waiting
    assert [(e.item_id, e.label) for e in opened.examples] == [("a", 1)]
    assert [(e.item_id, reason) for e, reason in opened.late] == [("zzz", "item-not-served")]
    assert serve(_recs("r", ["a", "b"]), "r", opened.request, PARAMS) is None  # redelivered


def test_close_sends_waiting_engagements_late_when_their_list_never_came() -> None:
    early = join(None, _event("a", 5), PARAMS).request
    assert early is not None
    at = ms(T0 + timedelta(seconds=5))
    assert close(early, at, int(WINDOW_S * 1000), PARAMS) is None
    closed = close(early, at + 1, int(WINDOW_S * 1000), PARAMS)
    assert closed is not None and closed.after is None and not closed.examples
    assert [e.item_id for e in closed.late] == ["a"]


def test_join_says_window_closed_when_an_in_window_engagement_comes_after_the_close() -> None:
    request = served(_recs("r", ["a"]), "r", int(WINDOW_S * 1000))
    closed = close(request, request.window_end_ms + 1, int(WINDOW_S * 1000), PARAMS)
    assert closed is not None and closed.after is not None
    assert join(closed.after, _event("a", 5), PARAMS).late == "window-closed"


@pytest.mark.parametrize(
    ("fields", "params"),
    [
        (dict(eventType="skip"), PARAMS),
        (dict(eventType="impression"), PARAMS),
        (dict(eventType="view", dwellMs=100), PARAMS.model_copy(update={"min_dwell_ms": 1000})),
    ],
)
def test_join_yields_nothing_when_the_engagement_does_not_qualify(
    fields: dict[str, Any], params: TrainingExamplesParams
) -> None:
    request = served(_recs("r", ["a"]), "r", int(WINDOW_S * 1000))
    assert join(request, _event("a", 5, **fields), params) == Joined()


def test_join_yields_one_positive_when_the_item_is_engaged_twice() -> None:
    request = served(_recs("r", ["a"]), "r", int(WINDOW_S * 1000))
    first = join(request, _event("a", 5), PARAMS)
    assert first.request is not None
    again = join(first.request, _event("a", 6, eventType="share"), PARAMS)
    assert again.example is None and again.request is None and again.late is None


def test_close_emits_negatives_for_items_without_a_positive_then_deletes_the_marker() -> None:
    window = int(WINDOW_S * 1000)
    request = served(_recs("r", ["a", "b", "c"]), "r", window)
    labelled = join(request, _event("b", 5), PARAMS).request
    assert labelled is not None
    assert close(labelled, labelled.window_end_ms, window, PARAMS) is None  # ties still join
    closed = close(labelled, labelled.window_end_ms + 1, window, PARAMS)
    assert closed is not None and closed.after is not None
    assert [(e.item_id, e.label, e.ts) for e in closed.examples] == [
        ("a", 0, labelled.window_end_ms),
        ("c", 0, labelled.window_end_ms),
    ]
    marker = closed.after
    assert marker.closed and not marker.items and not marker.user
    assert close(marker, marker.window_end_ms + window, window, PARAMS) is None
    gone = close(marker, marker.window_end_ms + window + 1, window, PARAMS)
    assert gone is not None and gone.after is None and not gone.examples


def test_close_emits_negatives_only_for_shown_items_when_negatives_are_shown() -> None:
    window = int(WINDOW_S * 1000)
    request = served(_recs("r", ["a", "b", "c", "d"]), "r", window)
    events = [
        _event("a", 1, eventType="impression"),
        _event("b", 1, eventType="impression"),
        _event("b", 2, eventType="like"),
        _event("c", 3, eventType="skip"),
    ]
    for event in events:
        joined = join(request, event, SHOWN)
        request = joined.request or request
    assert [s.shown for s in request.items] == [True, True, True, False]
    assert join(request, _event("a", 4, eventType="impression"), SHOWN) == Joined(), "once"

    closed = close(request, request.window_end_ms + 1, window, SHOWN)

    assert closed is not None
    assert [(e.item_id, e.label) for e in closed.examples] == [("a", 0), ("c", 0)], "d: unseen"
    assert decode_state(encode_state(request)) == request
    by_default = close(request, request.window_end_ms + 1, window, PARAMS)
    assert by_default is not None and [e.item_id for e in by_default.examples] == ["a", "c", "d"]


def test_join_marks_nothing_shown_when_every_served_item_is_a_negative() -> None:
    request = served(_recs("r", ["a"]), "r", int(WINDOW_S * 1000))
    assert join(request, _event("a", 1, eventType="impression"), PARAMS) == Joined()


def test_kept_is_a_function_of_the_id_and_keeps_about_the_rate_when_down_sampling() -> None:
    ids = [example_id(f"r{n}", "a") for n in range(4000)]
    first = [kept(i, 0.25) for i in ids]
    assert first == [kept(i, 0.25) for i in ids]
    assert 0.22 < sum(first) / len(ids) < 0.28
    assert all(kept(i, 1.0) for i in ids)


def test_close_records_the_sample_rate_on_each_kept_negative_when_down_sampling() -> None:
    window = int(WINDOW_S * 1000)
    request = served(_recs("r", [f"i{n}" for n in range(200)]), "r", window)
    closed = close(request, request.window_end_ms + 1, window, SAMPLED)
    assert closed is not None
    assert 60 < len(closed.examples) < 140
    assert {e.sample_rate for e in closed.examples} == {0.5}
    assert [e.item_id for e in closed.examples] == [
        s.item_id for s in request.items if kept(example_id("r", s.item_id), 0.5)
    ]


def test_state_codec_round_trips_the_exact_float32_features_when_encoded_and_decoded() -> None:
    request = served(_recs("r", ["a", "b"]), "r", 1000)
    labelled = join(request, _event("a", 0.5), PARAMS).request
    assert labelled is not None
    assert decode_state(encode_state(labelled)) == labelled
    early = join(None, _event("a", 0.5), PARAMS).request
    assert early is not None and decode_state(encode_state(early)) == early


def test_decode_state_raises_value_error_when_payload_is_not_a_state() -> None:
    with pytest.raises(ValueError, match="not a request state"):
        decode_state(b'{"requestId": "r"}')


def test_watermark_trails_by_the_lateness_and_moves_with_the_wall_clock_when_idle() -> None:
    mark = Watermark(lateness_ms=2000, idle_ms=10_000)
    mark.observe([100_000, 90_000], now=1000.0)
    assert mark.at(1000.0) == 98_000
    assert mark.at(1010.0) == 98_000  # not idle long enough yet
    assert mark.at(1015.0) == 103_000
    mark.observe([50_000], now=1016.0)  # an old event: the watermark never goes back
    assert mark.at(1016.0) == 103_000


def test_watermark_ignores_event_times_ahead_of_the_wall_clock_when_observing() -> None:
    mark = Watermark(lateness_ms=0, idle_ms=10_000)
    mark.observe([10**15], now=1000.0)
    assert mark.at(1000.0) == 1_000_000


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _context(broker: FakeBroker, identity: str, sink: Any = None, **params: Any) -> StageContext:
    return StageContext(
        "s",
        StageType.TRAINING_EXAMPLES,
        {"engagementsTopic": "engagements", "windowSeconds": WINDOW_S, **params},
        None,
        pipeline="p",
        topics=Topics(reader=broker.reader, sink=sink or broker.sink),
        state_topic=STATE,
        identity=identity,
        input_topic=INPUT,
        outputs=(OUTPUT,),
    )


AFTER_T0 = T0.timestamp() + 3600  # the wall clock: an hour after the events


async def _stage(
    broker: FakeBroker, identity: str = "r1", clock: Clock | None = None, **params: Any
) -> TrainingExamplesStage:
    return await build(_context(broker, identity, **params), clock or Clock(AFTER_T0))


def _examples(broker: FakeBroker) -> list[TrainingExample]:
    return [TrainingExample.model_validate_json(r.payload) for r in broker.log(OUTPUT)]


async def test_stage_emits_positives_at_once_and_negatives_when_the_watermark_passes() -> None:
    broker = FakeBroker()
    stage = await _stage(broker, allowedLatenessSeconds=0)
    result = await stage.process([_recs("r", ["a", "b"]), _event("a", 3)])
    assert not result.outputs and not result.errors  # it writes its outputs itself
    assert [(e.item_id, e.label) for e in _examples(broker)] == [("a", 1)]
    await stage.process([_recs("r2", ["c"], seconds=WINDOW_S + 1)])  # moves the watermark
    assert [(e.item_id, e.label) for e in _examples(broker)] == [("a", 1), ("b", 0)]


async def test_stage_sends_late_events_with_their_reason_when_they_join_nothing() -> None:
    broker = FakeBroker()
    stage = await _stage(broker, allowedLatenessSeconds=0)
    await stage.process([_recs("r", ["a"]), _event("a", 5, request="nope")])
    await stage.process([_recs("r2", ["c"], seconds=WINDOW_S + 1)])
    await stage.process([_event("a", 10), _event("a", WINDOW_S + 1)])
    reasons = [r.properties[LATE_REASON_PROPERTY] for r in broker.log(LATE)]
    assert reasons == ["unknown-request", "window-closed", "after-window"]
    assert Engagement.model_validate_json(broker.log(LATE)[0].payload).request_id == "nope"


async def test_stage_dead_letters_recommendations_when_they_have_no_request_id() -> None:
    stage = await _stage(FakeBroker())
    recs = _recs("r", ["a"]).model_copy(update={"request_id": None})
    assert [e.reason for e in (await stage.process([recs])).errors] == ["no-request-id"]


async def test_stage_closes_windows_without_input_when_idle_for_the_flush_time() -> None:
    broker = FakeBroker()
    clock = Clock(T0.timestamp() + 1)
    stage = await _stage(broker, clock=clock, allowedLatenessSeconds=0, idleFlushSeconds=5)
    await stage.process([_recs("r", ["a"])])
    clock.now += WINDOW_S + 1
    await stage.flush()
    assert not _examples(broker)  # idle, but the window's end is 5 s of idle time ahead
    clock.now += 5
    await stage.flush()
    assert [(e.item_id, e.label) for e in _examples(broker)] == [("a", 0)]


async def test_restarted_stage_emits_each_example_once_when_it_resumes_from_the_state() -> None:
    broker = FakeBroker()
    first = await _stage(broker, allowedLatenessSeconds=0)
    await first.process([_recs("r", ["a", "b"]), _event("a", 3)])
    second = await _stage(broker, identity="r2", allowedLatenessSeconds=0)
    await second.process([_recs("r", ["a", "b"]), _event("a", 3)])  # redelivered: no change
    await second.process([_recs("r2", ["c"], seconds=WINDOW_S + 1)])
    assert sorted((e.item_id, e.label) for e in _examples(broker)) == [("a", 1), ("b", 0)]


async def test_stage_leaves_a_request_to_its_owner_when_another_replica_wrote_it() -> None:
    broker = FakeBroker()
    other = await _stage(broker, identity="r2", allowedLatenessSeconds=0)
    mine = await _stage(broker, identity="r1", allowedLatenessSeconds=0)
    await other.process([_recs("r", ["a"])])
    await mine.process([_recs("x", ["c"], seconds=2 * WINDOW_S, user="v")])
    assert [e.request_id for e in _examples(broker)] == []  # r is the other replica's
    await other.process([_recs("y", ["d"], seconds=2 * WINDOW_S, user="w")])
    assert [(e.request_id, e.label) for e in _examples(broker)] == [("r", 0)]


async def test_stage_raises_and_commits_no_state_when_an_example_cannot_be_published() -> None:
    broker = FakeBroker()
    sinks: dict[str, FakeSink] = {}

    async def sink(topic: str) -> FakeSink:
        sinks[topic] = await broker.sink(topic)
        return sinks[topic]

    stage = await build(_context(broker, "r1", sink=sink), Clock(AFTER_T0))
    await stage.process([_recs("r", ["a"])])
    sinks[OUTPUT].fail_with.append(PulsarUnavailable("down"))
    with pytest.raises(OutputUnavailable):
        await stage.process([_event("a", 3)])
    await stage.process([_event("a", 3)])  # the retry finds the item still open
    assert [(e.item_id, e.label) for e in _examples(broker)] == [("a", 1)]


def test_registry_declares_the_engagements_side_input_when_asked() -> None:
    assert REGISTRY[StageType.TRAINING_EXAMPLES].side_inputs == {"engagementsTopic": Engagement}


EVENTS = st.lists(
    st.tuples(
        st.integers(0, 5),  # request
        st.integers(0, 3),  # item (3: never served)
        st.sampled_from(["impression", "view", "like", "share", "skip"]),
        st.integers(0, 120),  # seconds after the request was served
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=st.integers(1, 6), events=EVENTS, batch=st.integers(1, 8))
def test_stage_yields_exactly_one_correctly_labelled_example_per_served_item(
    requests: int, events: list[tuple[int, int, str, int]], batch: int
) -> None:
    """Served items and engagements in event-time order, any batching: after the last window
    closes every served item has exactly one example, a positive iff a qualifying engagement
    answered it within the window; every other engagement is late or does not qualify."""
    import asyncio

    async def run() -> None:
        broker = FakeBroker()
        clock = Clock(T0.timestamp())
        # The lateness covers how early an engagement may be read.
        stage = await _stage(broker, clock=clock, allowedLatenessSeconds=3, idleFlushSeconds=1)
        timeline: list[tuple[float, Recommendations | Engagement]] = [
            (10.0 * r, _recs(f"r{r}", ["i0", "i1", "i2"], seconds=10 * r)) for r in range(requests)
        ]
        timeline += [
            (10.0 * r + t, _event(f"i{i}", 10 * r + t, request=f"r{r}", eventType=kind))
            for r, i, kind, t in events
            if r < requests
        ]
        # The two topics are read in any order: an engagement may come a little early.
        timeline.sort(key=lambda pair: pair[0] - (3 if isinstance(pair[1], Engagement) else 0))
        for start in range(0, len(timeline), batch):
            chunk = timeline[start : start + batch]
            clock.now = T0.timestamp() + chunk[-1][0] + 0.5
            await stage.process([item for _, item in chunk])
        clock.now += 10 * requests + 2 * WINDOW_S + 10
        await stage.flush()
        got = _examples(broker)
        assert len({e.id for e in got}) == len(got) == 3 * requests
        for r in range(requests):
            for i in range(3):
                positive = any(
                    rr == r and ii == i and kind in ("view", "like", "share") and t <= WINDOW_S
                    for rr, ii, kind, t in events
                )
                (found,) = [e for e in got if e.id == example_id(f"r{r}", f"i{i}")]
                assert found.label == int(positive)

    asyncio.run(run())
