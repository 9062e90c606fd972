"""Simulated users for the recommendation sample (tests and the demo only).

Each user has a hidden taste: a unit vector in the item embedding space, the mean of the real
embeddings of the catalogue items of a few categories (the content pipeline's output, so real
MiniLM embeddings). The user reads its ``Recommendations`` and answers each with ``Engagement``
events: an impression for every shown item, then a view, like or share with a probability that
rises with the item's similarity to the taste, a skip otherwise; dwell grows with the
similarity. The decisions are pure functions of the similarity and seeded random draws; the
Pulsar side is ``Users``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pulsar

from streamvane_worker.inference.backend import unit_rows

Vector = npt.NDArray[np.float32]

MIDPOINT = 0.25
"""Taste similarity at which an item is engaged with (view/like/share) half the time: between
the similarity of unrelated demo items to a taste (~0.05-0.15) and of items of a liked
category (~0.4-0.6)."""
WIDTH = 0.05
"""How sharply the engagement probability rises around ``MIDPOINT``."""
SHARE, LIKE = 0.15, 0.35
"""Shares of the positive engagements that are shares and likes (the rest are views)."""
DWELL_MAX_MS = 30_000
SKIP_DWELL_MS = 1_500


@dataclass(frozen=True)
class Shown:
    """One recommended item as the user sees it."""

    item_id: str
    score: float


@dataclass(frozen=True)
class Served:
    """The part of a ``Recommendations`` message a user answers."""

    user_id: str
    request_id: str | None
    profile_version: int
    candidates_scored: int
    items: tuple[Shown, ...]
    model_version: str = ""
    """The ranker version that scored them."""

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Served:
        return cls(
            user_id=doc["userId"],
            request_id=doc.get("requestId"),
            profile_version=int(doc["profileVersion"]),
            candidates_scored=int(doc["candidatesScored"]),
            items=tuple(Shown(i["itemId"], float(i["score"])) for i in doc["items"]),
            model_version=str(doc.get("model", {}).get("version", "")),
        )


@dataclass(frozen=True)
class User:
    user_id: str
    likes: tuple[str, ...]
    """The categories the taste was made of (for display)."""
    taste: Vector


def unit(vector: npt.ArrayLike) -> Vector:
    return unit_rows(np.asarray(vector, dtype=np.float32))


def taste_of(vectors: Sequence[Vector]) -> Vector:
    """A taste liking these items: the unit mean of their unit embeddings."""
    return unit(np.mean([unit(v) for v in vectors], axis=0))


def make_users(
    count: int,
    vectors: Mapping[str, Vector],
    categories: Mapping[str, str],
    rng: np.random.Generator,
    per_user: int = 2,
    min_items: int = 1,
) -> list[User]:
    """``count`` users, each with a taste for ``per_user`` distinct categories (of the items in
    ``categories``, item id -> category), chosen at random among those with at least
    ``min_items`` items (so that a taste is not used up in a round or two)."""
    by_category: dict[str, list[str]] = {}
    for item_id, category in sorted(categories.items()):
        by_category.setdefault(category, []).append(item_id)
    names = sorted(c for c, ids in by_category.items() if len(ids) >= min_items)
    if len(names) < per_user:
        raise ValueError(
            f"tastes need {per_user} categories of at least {min_items} items; "
            f"the catalogue has {len(names)}"
        )
    users = []
    for n in range(count):
        likes = tuple(sorted(str(c) for c in rng.choice(names, per_user, replace=False)))
        liked = [vectors[i] for c in likes for i in by_category[c]]
        users.append(User(f"sim-user-{n}", likes, taste_of(liked)))
    return users


def similarity(taste: Vector, item: Vector) -> float:
    return float(np.dot(taste, unit(item)))


def engagement_probability(sim: float) -> float:
    """Probability of a view, like or share: rises with the taste similarity."""
    return 1.0 / (1.0 + math.exp(-(sim - MIDPOINT) / WIDTH))


def event_type(sim: float, draw: float) -> str:
    """The user's answer to one shown item, given a uniform draw in [0, 1)."""
    p = engagement_probability(sim)
    if draw < p * SHARE:
        return "share"
    if draw < p * (SHARE + LIKE):
        return "like"
    return "view" if draw < p else "skip"


def dwell_ms(sim: float, event: str, draw: float) -> int:
    """Time spent on the item: up to ``DWELL_MAX_MS`` for what the user likes, about a second
    and a half for a skip; ``draw`` in [0, 1) adds +-25 % noise."""
    noise = 0.75 + 0.5 * draw
    if event == "skip":
        return round(SKIP_DWELL_MS * noise)
    return round(DWELL_MAX_MS * engagement_probability(sim) * noise)


def answer(
    user: User,
    served: Served,
    vectors: Mapping[str, Vector],
    rng: np.random.Generator,
    now: datetime,
) -> list[dict[str, Any]]:
    """The engagements a user sends for one served list: an impression for every shown item,
    then one view / like / share / skip each, in the order shown, event times a millisecond
    apart from ``now`` (so every event is distinct and in order)."""
    events: list[dict[str, Any]] = []
    at = now

    def emit(item_id: str, kind: str, dwell: int) -> None:
        nonlocal at
        events.append(engagement(user.user_id, item_id, kind, dwell, served.request_id, at))
        at += timedelta(milliseconds=1)

    for shown in served.items:
        emit(shown.item_id, "impression", 0)
    for shown in served.items:
        sim = similarity(user.taste, vectors[shown.item_id])
        kind = event_type(sim, float(rng.random()))
        emit(shown.item_id, kind, dwell_ms(sim, kind, float(rng.random())))
    return events


def engagement(
    user_id: str, item_id: str, kind: str, dwell: int, request_id: str | None, at: datetime
) -> dict[str, Any]:
    """One ``Engagement`` message as JSON."""
    return {
        "userId": user_id,
        "itemId": item_id,
        "eventType": kind,
        "dwellMs": dwell,
        "requestId": request_id,
        "eventTime": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def taste_match(user: User, item_ids: Iterable[str], vectors: Mapping[str, Vector]) -> float:
    """Mean taste similarity of the given items (NaN for none): how well a list fits."""
    sims = [similarity(user.taste, vectors[i]) for i in item_ids]
    return float(np.mean(sims)) if sims else math.nan


def stray_item(user: User, vectors: Mapping[str, Vector], rng: np.random.Generator) -> str:
    """A first click outside the user's taste: a random item of the less similar half of
    ``vectors``, so the recommendations it brings show no knowledge of the taste."""
    ordered = sorted(vectors, key=lambda i: (similarity(user.taste, vectors[i]), i))
    return ordered[int(rng.integers(0, max(1, len(ordered) // 2)))]


class Loop(Protocol):
    """Where engagements go and recommendations come from (``Users`` on the stack)."""

    def send(self, events: Iterable[dict[str, Any]]) -> None: ...

    def until_answered(
        self, users: Iterable[str], timeout_s: float, progress: Callable[[int], None]
    ) -> dict[str, Served]: ...


@dataclass(frozen=True)
class Trajectory:
    user: User
    served: tuple[Served, ...]
    """The user's recommendations after its stray first click, then after each round."""


def close_loop(
    users: Sequence[User],
    loop: Loop,
    vectors: Mapping[str, Vector],
    rounds: int,
    rng: np.random.Generator,
    timeout_s: float,
    progress: Callable[[str, int], None] = lambda _step, _done: None,
    keep_going: Callable[[Sequence[Mapping[str, Served]]], bool] = lambda _served: False,
    max_rounds: int = 0,
) -> list[Trajectory]:
    """Each user clicks one stray item (``stray_item``, a view), then answers its newest
    recommendations ``rounds`` times (``answer``), each time waiting until the
    recommendations reflect everything it sent; then more rounds, up to ``max_rounds`` in
    all, while ``keep_going`` (given every round's recommendations so far) says so.
    ``progress`` gets the step's name and the users answered so far."""
    loop.send(
        engagement(
            u.user_id, stray_item(u, vectors, rng), "view", DWELL_MAX_MS // 2, None, now_utc()
        )
        for u in users
    )
    ids = [u.user_id for u in users]

    def step(name: str) -> Callable[[int], None]:
        return lambda done: progress(name, done)

    served = [loop.until_answered(ids, timeout_s, step("first click"))]
    while len(served) <= rounds or (len(served) <= max_rounds and keep_going(served)):
        r = len(served)
        for u in users:
            loop.send(answer(u, served[-1][u.user_id], vectors, rng, now_utc()))
        served.append(loop.until_answered(ids, timeout_s, step(f"round {r}")))
    return [Trajectory(u, tuple(s[u.user_id] for s in served)) for u in users]


class Users:
    """The simulated users on the stack: sends their engagements keyed by user id and reads
    their recommendations (the newest per user by profile version)."""

    def __init__(self, client: pulsar.Client, engagements_topic: str, recs_topic: str) -> None:
        self._producer = client.create_producer(
            engagements_topic, batching_enabled=False, block_if_queue_full=True
        )
        self._consumer = client.subscribe(
            recs_topic,
            f"simulated-users-{time.monotonic_ns()}",
            initial_position=pulsar.InitialPosition.Latest,
        )
        self.sent: dict[str, int] = {}
        """Engagements sent per user: the profile version they bring it to (each distinct
        engagement of a catalogue item adds one)."""
        self.latest: dict[str, Served] = {}

    def send(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self._producer.send(json.dumps(event).encode(), partition_key=event["userId"])
            self.sent[event["userId"]] = self.sent.get(event["userId"], 0) + 1

    def until_answered(
        self,
        users: Iterable[str],
        timeout_s: float,
        progress: Callable[[int], None] = lambda _: None,
    ) -> dict[str, Served]:
        """Reads recommendations until each user's reflects every engagement it sent (profile
        version = engagements sent); ``progress`` gets the count of such users as they come.
        Raises TimeoutError naming the users still waiting."""
        wanted = set(users)
        deadline = time.monotonic() + timeout_s

        def waiting() -> set[str]:
            return {
                u
                for u in wanted
                if u not in self.latest or self.latest[u].profile_version < self.sent.get(u, 0)
            }

        while missing := waiting():
            progress(len(wanted) - len(missing))
            if time.monotonic() > deadline:
                raise TimeoutError(f"no up-to-date recommendations for {sorted(missing)}")
            try:
                message = self._consumer.receive(timeout_millis=500)
            except pulsar.Timeout:
                continue
            self._consumer.acknowledge(message)
            served = Served.from_json(json.loads(message.data()))
            newest = self.latest.get(served.user_id)
            if newest is None or served.profile_version > newest.profile_version:
                self.latest[served.user_id] = served
        progress(len(wanted))
        return {u: self.latest[u] for u in wanted}

    def close(self) -> None:
        self._producer.close()
        self._consumer.close()


def now_utc() -> datetime:
    return datetime.now(UTC)


def wait_catalogue_followed(
    client: pulsar.Client,
    topics: tuple[str, str, str],
    item_id: str,
    retrievable: int,
    timeout_s: float,
) -> None:
    """Until the stages hold the whole catalogue: a probe user views ``item_id`` again and
    again until its candidates come from an index of ``retrievable`` items and the ranker
    scored every candidate (it knows them all). ``topics``: engagements, candidates,
    recommendations. Raises TimeoutError."""
    engagements, candidates_topic, recs_topic = topics
    probe = Users(client, engagements, recs_topic)
    candidates = client.subscribe(
        candidates_topic,
        f"catalogue-probe-{time.monotonic_ns()}",
        initial_position=pulsar.InitialPosition.Latest,
    )
    user = f"catalogue-probe-{time.monotonic_ns()}"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            probe.send([engagement(user, item_id, "view", 1000, None, now_utc())])
            version = probe.sent[user]
            found: dict[str, Any] = {}
            while int(found.get("profile", {}).get("version", -1)) < version:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no candidates for the catalogue probe in {timeout_s}s")
                with contextlib.suppress(pulsar.Timeout):
                    message = candidates.receive(timeout_millis=500)
                    candidates.acknowledge(message)
                    doc = json.loads(message.data())
                    found = doc if doc["userId"] == user else found
            ranked = probe.until_answered([user], deadline - time.monotonic())[user]
            scored = ranked.candidates_scored
            if found["indexSize"] == retrievable and scored == len(found["items"]):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"catalogue not followed: index of {found['indexSize']} items")
    finally:
        probe.close()
        candidates.close()


def announcements(client: pulsar.Client, topic: str) -> list[dict[str, Any]]:
    """Every ``ModelVersion`` on ``topic`` so far, in order (a reader: nothing consumed)."""
    reader = client.create_reader(topic, pulsar.MessageId.earliest)
    found = []
    try:
        while reader.has_message_available():
            found.append(json.loads(reader.read_next(timeout_millis=5000).data()))
    finally:
        reader.close()
    return found


def announce_latency_s(announcement: Mapping[str, Any]) -> float | None:
    """Seconds from the newest example a version learned from (a positive's time is its
    engagement's) to the version's announcement."""
    newest = announcement.get("newestExampleTime")
    if not newest:
        return None
    learned = datetime.fromisoformat(newest.replace("Z", "+00:00"))
    announced = datetime.fromisoformat(announcement["announcedAt"].replace("Z", "+00:00"))
    return (announced - learned).total_seconds()
