"""The autoscaling policy on single readings, on traces and on generated loads."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from streamvane_operator.scaling.policy import (
    SATURATED_QUEUE_US,
    Objective,
    Reason,
    Signals,
    State,
    decide,
    frozen,
)

OBJECTIVE = Objective(
    min_replicas=0,
    max_replicas=10,
    target_lag_s=30,
    scale_down_delay_s=60,
    idle_s_before_zero=120,
)


def reading(**fields: float) -> Signals:
    base = {
        "now": 100.0,
        "backlog": 0,
        "unacked": 0,
        "rate_in": 0.0,
        "rate_out": 0.0,
        "replicas": 1,
        "ready_replicas": 1,
    }
    base.update(fields)
    return Signals(**base)  # type: ignore[arg-type]


@dataclass
class Trace:
    """A stage in a one-second simulation: replicas consume ``capacity`` msg/s each once
    ready, ``start_s`` after being requested; the policy runs every ``period_s``."""

    objective: Objective
    capacity: float
    start_s: int = 5
    period_s: int = 5
    replicas: int = 0
    ready: int = 0
    backlog: float = 0.0
    state: State = State()

    def __post_init__(self) -> None:
        self.pending: list[int] = []
        self.changes: list[tuple[int, int, Reason]] = []
        self.arrived = self.processed = 0.0
        self.backlogs: list[float] = []

    def run(self, arrivals: list[float], t0: int = 0) -> None:
        for i, arriving in enumerate(arrivals):
            t = t0 + i
            self.ready += sum(1 for p in self.pending if p == t)
            self.pending = [p for p in self.pending if p > t]
            self.backlog += arriving
            done = min(self.backlog, self.ready * self.capacity)
            self.backlog -= done
            self.arrived += arriving
            self.processed += done
            self.backlogs.append(self.backlog)
            if t % self.period_s == 0:
                self._tick(t)

    def _tick(self, t: int) -> None:
        signals = Signals(
            now=t,
            backlog=int(self.backlog),
            unacked=0,
            rate_in=self.arrived / self.period_s,
            rate_out=self.processed / self.period_s,
            replicas=self.replicas,
            ready_replicas=self.ready,
        )
        self.arrived = self.processed = 0.0
        decision = decide(self.objective, signals, self.state)
        self.state = decision.state
        if decision.replicas != self.replicas:
            self.changes.append((t, decision.replicas, decision.reason))
            if decision.replicas > self.replicas:
                self.pending += [t + self.start_s] * (decision.replicas - self.replicas)
            else:
                drop = self.replicas - decision.replicas
                cancelled = min(drop, len(self.pending))
                self.pending = self.pending[: len(self.pending) - cancelled]
                self.ready -= drop - cancelled
            self.replicas = decision.replicas


def test_decide_scales_from_zero_when_the_subscription_has_a_backlog() -> None:
    decision = decide(OBJECTIVE, reading(backlog=1, replicas=0, ready_replicas=0), State())

    assert decision.replicas >= 1
    assert decision.reason is Reason.SCALED_FROM_ZERO


def test_decide_scales_up_at_once_but_bounded_when_a_burst_arrives() -> None:
    decision = decide(OBJECTIVE, reading(backlog=50_000, replicas=2, ready_replicas=2), State())

    assert decision.replicas == 6  # +4 (or doubling) per decision, not straight to 10
    assert decision.reason is Reason.SCALED_UP


def test_decide_uses_measured_rate_when_replicas_run_flat_out() -> None:
    state = State(ready_replicas=2)
    busy = reading(backlog=3000, rate_in=0, rate_out=100, replicas=2, ready_replicas=2)

    decision = decide(OBJECTIVE, busy, state)

    # 50 msg/s per replica measured: 3000 / 30 s = 100 msg/s -> 2 replicas suffice.
    assert decision.state.rate_per_replica == 50
    assert decision.state.measured
    assert decision.replicas == 2
    assert decision.reason is Reason.STEADY


def test_decide_never_scales_to_zero_while_input_flows() -> None:
    state = State(rate_per_replica=100, measured=True, ready_replicas=1)
    decision = state_after = None
    for t in range(0, 1000, 5):
        decision = decide(OBJECTIVE, reading(now=t, rate_in=0.5, rate_out=0.5), state)
        state_after = decision.state
        state = state_after
        assert decision.replicas == 1, (t, decision)


def test_decide_never_scales_to_zero_while_messages_are_unacknowledged() -> None:
    state = State(idle_since=0, ready_replicas=1)

    decision = decide(OBJECTIVE, reading(now=1000, unacked=3), state)

    assert decision.replicas == 1


def test_decide_clamps_negative_unacked_when_pulsar_reports_it() -> None:
    state = State(idle_since=0, ready_replicas=1)

    decision = decide(OBJECTIVE, reading(now=1000, unacked=-5), state)

    assert decision.replicas == 0
    assert decision.reason is Reason.SCALED_TO_ZERO


def test_decide_scales_to_zero_only_after_idle_seconds_when_input_stops() -> None:
    trace = Trace(OBJECTIVE, capacity=20, replicas=1, ready=1)
    trace.run([10.0] * 60 + [0.0] * 400)

    (t, replicas, reason) = trace.changes[-1]
    assert (replicas, reason) == (0, Reason.SCALED_TO_ZERO)
    assert 60 + OBJECTIVE.idle_s_before_zero <= t <= 60 + OBJECTIVE.idle_s_before_zero + 10


def test_decide_drains_a_burst_within_the_target_lag_when_max_replicas_allow() -> None:
    objective = replace(OBJECTIVE, max_replicas=20)
    trace = Trace(objective, capacity=20, start_s=5, replicas=1, ready=1)
    trace.run([0.0] * 10 + [3000.0] + [0.0] * 300)

    drained = next(i for i, b in enumerate(trace.backlogs) if i > 10 and b == 0)
    assert drained - 10 <= 1.25 * objective.target_lag_s


def test_decide_waits_the_scale_down_delay_when_load_drops() -> None:
    objective = replace(OBJECTIVE, min_replicas=1)
    known = State(rate_per_replica=20, measured=True, ready_replicas=5)
    trace = Trace(objective, capacity=20, replicas=5, ready=5, state=known)
    trace.run([100.0] * 120)
    assert trace.changes == []
    trace.run([10.0] * 300, t0=120)

    (t, replicas, reason) = trace.changes[0]
    assert reason is Reason.SCALED_DOWN and replicas < 5
    assert t - 120 >= objective.scale_down_delay_s


def test_decide_holds_replicas_when_the_model_backend_is_saturated() -> None:
    signals = reading(backlog=5000, replicas=2, ready_replicas=2)
    busy = replace(signals, queue_us_per_request=SATURATED_QUEUE_US * 4)

    decision = decide(OBJECTIVE, busy, State())

    assert decision.replicas == 2
    assert decision.reason is Reason.BACKEND_SATURATED
    assert "queues requests" in decision.message


def test_decide_goes_to_max_replicas_when_they_were_lowered_below_the_current_count() -> None:
    decision = decide(replace(OBJECTIVE, max_replicas=3), reading(replicas=7), State())

    assert decision.replicas == 3


def test_frozen_keeps_replicas_and_says_why_when_signals_are_missing() -> None:
    decision = frozen(4, "Pulsar stats unavailable: refused", State())

    assert decision.replicas == 4
    assert decision.summary.startswith("SignalsMissing: replicas frozen: Pulsar")


objectives = st.builds(
    lambda lo, span, lag, delay, idle: Objective(lo, lo + span, lag, delay, idle),
    st.integers(0, 5),
    st.integers(1, 20),
    st.floats(1, 600),
    st.floats(0, 600),
    st.floats(0, 600),
)
signals = st.builds(
    Signals,
    now=st.floats(0, 1e6),
    backlog=st.integers(0, 10**7),
    unacked=st.integers(-1000, 10**5),
    rate_in=st.floats(0, 1e5),
    rate_out=st.floats(0, 1e5),
    replicas=st.integers(0, 40),
    ready_replicas=st.integers(0, 40),
    queue_us_per_request=st.none() | st.floats(0, 1e7),
)
states = st.builds(
    State,
    rate_per_replica=st.none() | st.floats(0.01, 1e4),
    last_change=st.none() | st.floats(0, 1e6),
    low_since=st.none() | st.floats(0, 1e6),
    low_peak=st.integers(0, 40),
    idle_since=st.none() | st.floats(0, 1e6),
    measured=st.booleans(),
    probed=st.booleans(),
    ready_replicas=st.integers(0, 40),
)


@settings(max_examples=150, deadline=None)
@given(objectives, signals, states)
def test_decide_stays_within_min_and_max_replicas_when_given_any_reading(
    objective: Objective, s: Signals, state: State
) -> None:
    decision = decide(objective, s, state)

    assert objective.min_replicas <= decision.replicas <= objective.max_replicas


@settings(max_examples=150, deadline=None)
@given(objectives, signals, states)
def test_decide_keeps_a_replica_when_work_is_waiting_or_flowing(
    objective: Objective, s: Signals, state: State
) -> None:
    decision = decide(objective, s, state)

    if s.backlog > 0 or s.rate_in > 0 or s.unacked > 0:
        assert decision.replicas >= 1


@settings(max_examples=20, deadline=None)
@given(
    rate=st.floats(1, 150),
    capacity=st.floats(5, 60),
    start_s=st.integers(0, 30),
)
def test_decide_changes_nothing_for_ten_minutes_when_load_is_constant(
    rate: float, capacity: float, start_s: int
) -> None:
    objective = replace(OBJECTIVE, max_replicas=math.ceil(rate / capacity / 0.8) + 4)
    trace = Trace(objective, capacity=capacity, start_s=start_s)
    trace.run([rate] * 900)  # settling: measuring capacity, trying fewer replicas
    settled = len(trace.changes)
    trace.run([rate] * 600, t0=900)

    assert trace.changes[settled:] == []
    assert trace.replicas * capacity >= rate  # and it keeps up
