"""The rollout decision on scripted histories: a fake member world that applies the writes,
a clock that advances, and the decisions taken one after the other."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from streamvane_operator.api.region import (
    Gates,
    GateValues,
    OnFailure,
    RegionPhase,
    RolloutPhase,
)
from streamvane_operator.rollout.decide import (
    DEADLINE_EXCEEDED,
    GATE_FAILED,
    ROLLBACK_FAILED,
    UNREACHABLE,
    Decision,
    Observation,
    Policy,
    State,
    Write,
    decide,
    default_waves,
    gate_failure,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WAVES = (("eu",), ("us", "ap"))
POLICY = Policy(
    waves=WAVES, bake_s=60, deadline_s=120, gates=Gates(), on_failure=OnFailure.ROLLBACK
)
GOOD = GateValues(dead_letter_ratio=0.0, throughput_ratio=1.0, input_messages=100)
BAD = GateValues(dead_letter_ratio=1.0, throughput_ratio=0.0, input_messages=100)


@dataclass
class World:
    """Member clusters that do what they are told: a written revision becomes ready (and
    reports ``health[revision]``) unless the region is down or the revision never starts."""

    revisions: dict[str, str]
    health: dict[str, GateValues] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    never_ready: set[str] = field(default_factory=set)
    history: list[Write] = field(default_factory=list)

    def observe(self) -> dict[str, Observation]:
        return {
            r: Observation(reachable=False, message="connection refused")
            if r in self.down
            else Observation(
                reachable=True,
                revision=rev,
                ready=rev not in self.never_ready,
                gates=self.health.get(rev, GOOD),
            )
            for r, rev in self.revisions.items()
        }

    def apply(self, decision: Decision) -> None:
        for write in decision.writes:
            assert write.region not in self.down
            self.revisions[write.region] = write.revision
            self.history.append(write)


def run(
    world: World,
    desired: str,
    state: State | None,
    *,
    start: datetime = T0,
    until: datetime | None = None,
    step_s: float = 10,
    policy: Policy = POLICY,
) -> tuple[State, Decision, datetime]:
    """Decide and apply every ``step_s`` until a terminal phase (or ``until``)."""
    now = start
    decision = decide(desired, policy, state, world.observe(), now)
    for _ in range(1000):
        world.apply(decision)
        state = decision.state
        if state.phase in (RolloutPhase.COMPLETE, RolloutPhase.ROLLED_BACK, RolloutPhase.FAILED):
            break
        if state.phase is RolloutPhase.HALTED and state.reason != UNREACHABLE:
            break
        if until is not None and now >= until:
            break
        now += timedelta(seconds=step_s)
        decision = decide(desired, policy, state, world.observe(), now)
    assert state is not None
    return state, decision, now


def good_state() -> State:
    return State("r1", "r1", 1, RolloutPhase.COMPLETE, T0 - timedelta(hours=1))


def test_decide_walks_waves_in_order_with_bake_when_every_gate_passes() -> None:
    world = World({"eu": "r1", "us": "r1", "ap": "r1"})
    state, _, end = run(world, "r2", good_state())
    assert state.phase is RolloutPhase.COMPLETE and state.last_good == "r2"
    assert [w.region for w in world.history] == ["eu", "us", "ap"]
    # two bakes of 60 s at least, each wave started only after the previous baked
    assert end - T0 >= timedelta(seconds=120)


def test_decide_never_writes_wave_two_when_a_gate_fails_in_wave_one() -> None:
    world = World({"eu": "r1", "us": "r1", "ap": "r1"}, health={"r2": BAD})
    state, decision, _ = run(world, "r2", good_state())
    assert state.phase is RolloutPhase.ROLLED_BACK and state.reason == GATE_FAILED
    assert world.history == [Write("eu", "r2"), Write("eu", "r1")]
    assert world.revisions == {"eu": "r1", "us": "r1", "ap": "r1"}
    assert decision.regions["eu"].phase is RegionPhase.ROLLED_BACK
    assert decision.regions["us"].phase is RegionPhase.PENDING
    assert "dead-letter ratio 1.00" in state.message


def test_decide_halts_without_rollback_when_on_failure_is_halt() -> None:
    world = World({"eu": "r1", "us": "r1", "ap": "r1"}, health={"r2": BAD})
    policy = replace(POLICY, on_failure=OnFailure.HALT)
    state, decision, _ = run(world, "r2", good_state(), policy=policy)
    assert state.phase is RolloutPhase.HALTED and state.reason == GATE_FAILED
    assert world.history == [Write("eu", "r2")]
    assert decision.regions["eu"].phase is RegionPhase.FAILED


def test_decide_rolls_back_when_the_wave_misses_its_deadline() -> None:
    world = World({"eu": "r1", "us": "r1", "ap": "r1"}, never_ready={"r2"})
    state, _, end = run(world, "r2", good_state())
    assert state.phase is RolloutPhase.ROLLED_BACK and state.reason == DEADLINE_EXCEEDED
    assert end - T0 <= timedelta(seconds=POLICY.deadline_s + 30)
    assert {w.region for w in world.history} == {"eu"}


def test_decide_halts_and_resumes_when_a_region_is_unreachable_mid_wave() -> None:
    world = World({"eu": "r1", "us": "r1", "ap": "r1"})
    # wave 1 baked; wave 2 starts while ap is down
    state, _, now = run(world, "r2", good_state(), until=T0 + timedelta(seconds=50))
    world.down.add("ap")
    state, decision, now = run(world, "r2", state, start=now, until=now + timedelta(seconds=600))
    assert state.phase is RolloutPhase.HALTED and state.reason == UNREACHABLE
    assert "ap unreachable" in state.message
    assert decision.regions["ap"].phase is RegionPhase.UNREACHABLE
    assert world.revisions["ap"] == "r1"  # never skipped, never written blind
    world.down.clear()
    state, _, _ = run(world, "r2", state, start=now)
    assert state.phase is RolloutPhase.COMPLETE
    assert world.revisions == {"eu": "r2", "us": "r2", "ap": "r2"}


def test_decide_restarts_at_wave_one_when_a_new_revision_supersedes_the_rollout() -> None:
    world = World({"eu": "r1", "us": "r1", "ap": "r1"})
    state, _, now = run(world, "r2", good_state(), until=T0 + timedelta(seconds=90))
    assert state.wave == 1 and world.revisions["us"] == "r2"
    decision = decide("r3", POLICY, state, world.observe(), now)
    assert decision.state.wave == 0 and decision.state.reason == "Superseded"
    assert decision.writes == (Write("eu", "r3"),)
    world.apply(decision)
    state, _, _ = run(world, "r3", decision.state, start=now)
    assert state.phase is RolloutPhase.COMPLETE and state.last_good == "r3"
    assert world.revisions == {"eu": "r3", "us": "r3", "ap": "r3"}


def test_decide_fails_when_the_rollback_itself_does_not_become_healthy() -> None:
    world = World({"eu": "r1", "us": "r1", "ap": "r1"}, health={"r2": BAD})
    world.never_ready.add("r1")  # whatever broke r2 broke the old revision too
    state, decision, _ = run(world, "r2", good_state())
    assert state.phase is RolloutPhase.FAILED and state.reason == ROLLBACK_FAILED
    assert "rollback to r1" in state.message
    assert decision.regions["eu"].phase is RegionPhase.FAILED
    assert {w.region for w in world.history} == {"eu"}


def test_decide_halts_when_the_first_revision_fails_with_nothing_to_restore() -> None:
    world = World({"eu": "", "us": "", "ap": ""}, health={"r1": BAD})
    state, _, _ = run(world, "r1", None)
    assert state.phase is RolloutPhase.HALTED
    assert "no good revision" in state.message
    assert world.history == [Write("eu", "r1")]


def test_decide_repairs_a_member_that_lost_its_revision_when_complete() -> None:
    world = World({"eu": "r1", "us": "", "ap": "r1"})
    decision = decide("r1", POLICY, good_state(), world.observe(), T0)
    assert decision.writes == (Write("us", "r1"),)


def test_default_waves_puts_one_region_first_when_there_are_several() -> None:
    assert default_waves(("a", "b", "c")) == (("a",), ("b", "c"))
    assert default_waves(("a",)) == (("a",),)


def test_gate_failure_names_each_violated_gate_when_values_cross_limits() -> None:
    gates = Gates(max_dead_letter_ratio=0.1, max_lag_seconds=30, min_throughput_ratio=0.9)
    values = GateValues(dead_letter_ratio=0.5, lag_seconds=45, throughput_ratio=0.5)
    assert gate_failure(gates, values).count(";") == 2
    assert gate_failure(gates, GOOD) == ""
    assert gate_failure(gates, None) == ""
