from __future__ import annotations

from prometheus_client import CollectorRegistry

from streamvane_worker.io.base import Record
from streamvane_worker.io.testing import FakeBroker
from streamvane_worker.stages.keyed_state import (
    VERSION_PROPERTY,
    WRITER_PROPERTY,
    Codec,
    KeyedState,
    StateMetrics,
)

TOPIC = "persistent://t/n/state"
CODEC: Codec[int] = Codec(lambda v: str(v).encode(), lambda b: int(b), lambda v: v)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _state(
    broker: FakeBroker,
    registry: CollectorRegistry | None = None,
    max_entries: int = 10,
    ttl_s: float = 100,
    clock: Clock | None = None,
    identity: str = "r1",
) -> KeyedState[int]:
    return KeyedState(
        await broker.reader(TOPIC, None),
        await broker.sink(TOPIC),
        CODEC,
        identity=identity,
        max_entries=max_entries,
        ttl_s=ttl_s,
        metrics=StateMetrics.create(registry, "p", "s"),
        clock=clock or Clock(),
    )


async def test_commit_evicts_the_least_recently_used_key_when_over_capacity() -> None:
    registry = CollectorRegistry()
    state = await _state(FakeBroker(), registry, max_entries=2)
    await state.commit({"a": 1, "b": 1})
    assert state.get("a") == 1  # a is now more recent than b
    await state.commit({"c": 1})
    assert (state.get("a"), state.get("b"), state.get("c")) == (1, None, 1)
    labels = {"pipeline": "p", "stage": "s"}
    assert registry.get_sample_value("streamvane_worker_state_entries", labels) == 2
    assert registry.get_sample_value("streamvane_worker_state_bytes", labels) == 2
    evicted = registry.get_sample_value(
        "streamvane_worker_state_evictions_total", labels | {"reason": "capacity"}
    )
    assert evicted == 1


async def test_commit_evicts_a_key_when_it_was_idle_longer_than_the_ttl() -> None:
    clock = Clock()
    state = await _state(FakeBroker(), ttl_s=10, clock=clock)
    await state.commit({"old": 1})
    clock.now = 11
    await state.commit({"new": 1})
    assert state.get("old") is None and state.get("new") == 1


async def test_rebuild_keeps_the_newest_version_when_the_topic_holds_several_per_key() -> None:
    broker = FakeBroker()
    for version in (3, 1):
        broker.log(TOPIC).append(
            Record("k", str(version).encode(), b"0", {VERSION_PROPERTY: str(version)})
        )
    state = await _state(broker)
    assert await state.rebuild() == 2 and state.get("k") == 3


async def test_catch_up_skips_own_checkpoints_and_applies_newer_ones_from_other_replicas() -> None:
    broker = FakeBroker()
    mine, other = await _state(broker, identity="r1"), await _state(broker, identity="r2")
    await mine.rebuild()
    await mine.commit({"k": 1})
    await other.commit({"k": 5})
    await mine.catch_up()
    assert mine.get("k") == 5
    assert [r.properties[WRITER_PROPERTY] for r in broker.log(TOPIC)] == ["r1", "r2"]


async def test_rebuild_skips_a_record_when_its_payload_does_not_decode() -> None:
    broker = FakeBroker()
    broker.log(TOPIC).append(Record("bad", b"not-an-int", b"0", {VERSION_PROPERTY: "1"}))
    state = await _state(broker)
    await state.rebuild()
    assert state.get("bad") is None and len(state) == 0


async def test_commit_deletes_a_key_for_every_replica_when_its_value_is_none() -> None:
    broker = FakeBroker()
    mine, other = await _state(broker), await _state(broker, identity="r2")
    await mine.commit({"a": 1, "b": 1})
    await other.catch_up()
    await mine.commit({"a": None})
    (tombstone,) = [r for r in broker.log(TOPIC) if r.key == "a" and not r.payload]
    assert tombstone.properties[VERSION_PROPERTY] == "2"
    await other.catch_up()
    assert (mine.get("a"), other.get("a"), other.get("b")) == (None, None, 1)
    restarted = await _state(broker, identity="r3")
    await restarted.rebuild()
    assert (restarted.get("a"), restarted.get("b")) == (None, 1)


async def test_owned_holds_committed_and_rebuilt_keys_but_not_those_another_replica_took() -> None:
    broker = FakeBroker()
    first = await _state(broker)
    await first.commit({"a": 1, "b": 1})
    second = await _state(broker, identity="r2")
    await second.rebuild()  # a starting replica cannot tell whose a key is: it takes them
    assert sorted(k for k, _ in second.owned()) == ["a", "b"]
    await second.commit({"b": 2})
    await first.catch_up()
    assert [k for k, _ in first.owned()] == ["a"]
    assert first.is_owned("a") and not first.is_owned("b") and first.get("b") == 2
