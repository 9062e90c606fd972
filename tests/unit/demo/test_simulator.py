"""The simulated users' decisions: engagement rises with taste similarity, seeded."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from streamvane_demo import simulator as sim

DIM = 8
T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def _axis(*ks: int) -> sim.Vector:
    v = np.zeros(DIM, dtype=np.float32)
    v[list(ks)] = 1.0
    return sim.unit(v)


VECTORS = {f"item-{k}": _axis(k) for k in range(DIM)}
CATEGORIES = {f"item-{k}": ("a", "b", "c", "d")[k // 2] for k in range(DIM)}


def _user(*ks: int) -> sim.User:
    return sim.User("u", ("x",), sim.taste_of([VECTORS[f"item-{k}"] for k in ks]))


def _served(*item_ids: str, request_id: str | None = "req-1") -> sim.Served:
    return sim.Served("u", request_id, 3, len(item_ids), tuple(sim.Shown(i, 0.5) for i in item_ids))


def test_engagement_probability_rises_with_taste_similarity() -> None:
    probabilities = [sim.engagement_probability(s) for s in np.linspace(-1, 1, 41)]
    assert probabilities == sorted(probabilities)
    assert probabilities[0] < 0.01 and probabilities[-1] > 0.99
    assert sim.engagement_probability(sim.MIDPOINT) == pytest.approx(0.5)


def test_event_type_is_a_skip_when_the_draw_is_above_the_engagement_probability() -> None:
    sim_ = sim.MIDPOINT  # probability 0.5
    assert sim.event_type(sim_, 0.0) == "share"
    assert sim.event_type(sim_, 0.5 * sim.SHARE + 1e-6) == "like"
    assert sim.event_type(sim_, 0.49) == "view"
    assert sim.event_type(sim_, 0.51) == "skip"


def test_positive_engagements_are_more_frequent_when_the_item_fits_the_taste() -> None:
    rng = np.random.default_rng(1)

    def positive_share(similarity: float) -> float:
        kinds = [sim.event_type(similarity, float(rng.random())) for _ in range(2000)]
        return sum(k != "skip" for k in kinds) / len(kinds)

    assert positive_share(0.5) > 0.95 > 0.05 > positive_share(0.0)


def test_dwell_is_longer_when_the_item_fits_the_taste_and_short_for_a_skip() -> None:
    assert sim.dwell_ms(0.6, "like", 0.5) > sim.dwell_ms(0.2, "view", 0.5)
    assert sim.dwell_ms(0.6, "like", 0.5) <= sim.DWELL_MAX_MS
    assert sim.dwell_ms(0.6, "skip", 0.0) < sim.dwell_ms(0.6, "skip", 0.99) < 2 * sim.SKIP_DWELL_MS


def test_answer_sends_an_impression_for_every_shown_item_then_one_decision_each() -> None:
    user = _user(0)
    served = _served("item-0", "item-5", "item-1")
    events = sim.answer(user, served, VECTORS, np.random.default_rng(0), T0)

    assert [(e["itemId"], e["eventType"]) for e in events[:3]] == [
        ("item-0", "impression"),
        ("item-5", "impression"),
        ("item-1", "impression"),
    ]
    decisions = {e["itemId"]: e["eventType"] for e in events[3:]}
    assert decisions["item-0"] != "skip" and decisions["item-5"] == "skip"
    assert {e["requestId"] for e in events} == {"req-1"}
    assert {e["userId"] for e in events} == {"u"}
    times = [e["eventTime"] for e in events]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert times[0] == "2026-12-02T10:00:00.000Z"


def test_answer_is_the_same_when_the_seed_is_the_same() -> None:
    served = _served(*VECTORS)
    first = sim.answer(_user(0, 1), served, VECTORS, np.random.default_rng(5), T0)
    again = sim.answer(_user(0, 1), served, VECTORS, np.random.default_rng(5), T0)
    assert first == again


def test_served_reads_the_request_id_and_profile_version_of_a_recommendations_message() -> None:
    doc = {
        "userId": "u",
        "requestId": "r",
        "profileVersion": 4,
        "candidatesScored": 2,
        "items": [{"itemId": "a", "score": 0.7, "features": {"any": "shape"}}],
    }
    assert sim.Served.from_json(doc) == sim.Served("u", "r", 4, 2, (sim.Shown("a", 0.7),))


def test_make_users_gives_each_user_a_unit_taste_of_distinct_categories() -> None:
    users = sim.make_users(5, VECTORS, CATEGORIES, np.random.default_rng(3))

    assert len({u.user_id for u in users}) == 5
    for user in users:
        assert len(set(user.likes)) == 2
        assert float(np.linalg.norm(user.taste)) == pytest.approx(1.0, abs=1e-6)
        liked = [i for i, c in CATEGORIES.items() if c in user.likes]
        others = [i for i in CATEGORIES if i not in liked]
        assert min(sim.similarity(user.taste, VECTORS[i]) for i in liked) > max(
            sim.similarity(user.taste, VECTORS[i]) for i in others
        )


def test_stray_item_is_among_the_less_similar_half() -> None:
    user = _user(0, 1)
    rng = np.random.default_rng(0)
    strays = {sim.stray_item(user, VECTORS, rng) for _ in range(50)}
    assert strays and not strays & {"item-0", "item-1"}


def test_taste_match_is_the_mean_similarity_of_the_items() -> None:
    user = _user(0)
    assert sim.taste_match(user, ["item-0", "item-1"], VECTORS) == pytest.approx(0.5)
    assert np.isnan(sim.taste_match(user, [], VECTORS))


class _NearestLoop:
    """A stand-in pipeline: recommends the unseen items nearest to the weighted sum of the
    user's engagements, and records what it was sent."""

    def __init__(self) -> None:
        self.profile: dict[str, sim.Vector] = {}
        self.seen: dict[str, set[str]] = {}
        self.sent: list[dict[str, Any]] = []

    def send(self, events: Iterable[dict[str, Any]]) -> None:
        weights = {"impression": 0.0, "view": 1.0, "like": 3.0, "share": 4.0, "skip": -1.0}
        for e in events:
            u = e["userId"]
            total = self.profile.get(u, np.zeros(DIM, dtype=np.float32))
            self.profile[u] = total + weights[e["eventType"]] * VECTORS[e["itemId"]]
            if e["eventType"] != "impression":
                self.seen.setdefault(u, set()).add(e["itemId"])
            self.sent.append(e)

    def until_answered(
        self, users: Iterable[str], timeout_s: float, progress: Callable[[int], None]
    ) -> dict[str, sim.Served]:
        answered = {}
        for u in users:
            version = sum(e["userId"] == u for e in self.sent)
            unseen = sorted(i for i in VECTORS if i not in self.seen[u])
            best = sorted(unseen, key=lambda i: -float(VECTORS[i] @ self.profile[u]))[:3]
            shown = tuple(sim.Shown(i, 1.0) for i in best)
            answered[u] = sim.Served(u, f"{u}-r{version}", version, 3, shown)
        progress(len(answered))
        return answered


def test_close_loop_answers_each_users_newest_recommendations_once_per_round() -> None:
    users = sim.make_users(2, VECTORS, CATEGORIES, np.random.default_rng(2))
    loop = _NearestLoop()
    steps: list[str] = []
    trajectories = sim.close_loop(
        users,
        loop,
        VECTORS,
        rounds=2,
        rng=np.random.default_rng(0),
        timeout_s=1,
        progress=lambda step, _: steps.append(step),
    )

    assert steps == ["first click", "round 1", "round 2"]
    for t in trajectories:
        mine = [e for e in loop.sent if e["userId"] == t.user.user_id]
        first, *rounds = t.served
        assert mine[0]["eventType"] == "view" and mine[0]["requestId"] is None
        assert first.profile_version == 1
        assert [s.profile_version for s in rounds] == [1 + 6, 1 + 12], "3 shown: 3 + 3 each"
        for answered, events in ((first, mine[1:7]), (rounds[0], mine[7:13])):
            assert {e["requestId"] for e in events} == {answered.request_id}
            assert {e["itemId"] for e in events} == {s.item_id for s in answered.items}


def test_close_loop_goes_on_past_its_rounds_while_keep_going_says_so_up_to_max_rounds() -> None:
    users = sim.make_users(2, VECTORS, CATEGORIES, np.random.default_rng(2))
    seen_by_keep_going: list[int] = []

    def keep_going(served: Sequence[Mapping[str, sim.Served]]) -> bool:
        seen_by_keep_going.append(len(served))
        return len(served) < 4  # stop once the first click and 3 rounds are in

    def run(max_rounds: int) -> int:
        trajectories = sim.close_loop(
            users,
            _NearestLoop(),
            VECTORS,
            rounds=1,
            rng=np.random.default_rng(0),
            timeout_s=1,
            keep_going=keep_going,
            max_rounds=max_rounds,
        )
        return len(trajectories[0].served) - 1

    assert run(max_rounds=10) == 3
    assert seen_by_keep_going == [2, 3, 4], "asked only after the required round"
    assert run(max_rounds=2) == 2, "never past max_rounds"
    assert run(max_rounds=0) == 1, "the required rounds run whatever max_rounds says"


def test_make_users_draws_tastes_only_from_categories_with_enough_items() -> None:
    categories = {**CATEGORIES, "item-7": "e"}  # d keeps one item, e has one
    users = sim.make_users(20, VECTORS, categories, np.random.default_rng(4), min_items=2)
    assert {c for u in users for c in u.likes} == {"a", "b", "c"}
    with pytest.raises(ValueError, match="2 categories of at least 3 items"):
        sim.make_users(1, VECTORS, categories, np.random.default_rng(4), min_items=3)
