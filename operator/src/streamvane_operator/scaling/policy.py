"""The autoscaling policy (pure): one stage's signals and the previous decision -> replicas.

The objective is the one a user states, ``targetLagSeconds``: what waits on the stage's
subscription should be consumed within that many seconds at the current input rate::

    replicas = ceil((rate_in + backlog / target_lag) / rate_per_replica)

``rate_per_replica`` is measured (acknowledged messages per second per ready replica,
smoothed), starting from a conservative prior. Scale-up is immediate (at most doubling,
or +4, per decision); scale-down waits ``scaleDownDelaySeconds`` with hysteresis and then
goes to the largest need seen meanwhile; zero only after ``idleSecondsBeforeZero`` without
input, backlog or unacknowledged messages, and up again on the first backlog. No scale-up
the model backend cannot serve: while Triton queues requests, replicas hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

PRIOR_RATE_PER_REPLICA = 5.0
"""Messages per second one replica is assumed to handle before any was measured: low, so
an unknown stage gets more replicas rather than too few."""
MIN_RATE_PER_REPLICA = 0.01
"""A floor for the measured rate (a replica that hardly moved must not mean infinite need)."""
SMOOTHING = 0.5
"""Weight of a new per-replica throughput sample (exponential moving average)."""
DOWN_UTILIZATION = 0.8
"""Fewer replicas only when they would run at most this busy: hysteresis against flapping."""
BUSY_BACKLOG_S = 2.0
"""A backlog above this many seconds of output means the replicas run flat out, so their
output rate measures their capacity (below it, only a lower bound)."""
MIN_BUSY_BACKLOG = 20
SATURATED_QUEUE_US = 50_000.0
"""Triton queue time per request (microseconds) above which the backend counts as saturated."""


class Reason(StrEnum):
    SCALED_UP = "ScaledUp"
    SCALED_FROM_ZERO = "ScaledFromZero"
    SCALED_DOWN = "ScaledDown"
    SCALED_TO_ZERO = "ScaledToZero"
    STEADY = "Steady"
    STABILIZING = "Stabilizing"
    IDLE = "Idle"
    AT_MAXIMUM = "AtMaximum"
    BACKEND_SATURATED = "BackendSaturated"
    SIGNALS_MISSING = "SignalsMissing"


@dataclass(frozen=True)
class Objective:
    """What the user asked for (``spec.stages[].scaling``)."""

    min_replicas: int
    max_replicas: int
    target_lag_s: float
    scale_down_delay_s: float
    idle_s_before_zero: float


@dataclass(frozen=True)
class Signals:
    """One reading of a stage, taken at ``now`` (seconds on any steady clock)."""

    now: float
    backlog: int
    """Messages on the subscription not yet acknowledged (msgBacklog)."""
    unacked: int
    """Delivered to a consumer, not yet acknowledged (clamped at 0)."""
    rate_in: float
    """Messages per second published to the input topic."""
    rate_out: float
    """Messages per second the stage's consumers take (all replicas together)."""
    replicas: int
    """The Deployment's replicas now."""
    ready_replicas: int
    queue_us_per_request: float | None = None
    """Triton queue time per request of the stage's model since the last reading; None when
    the stage does not infer or sent no requests."""


@dataclass(frozen=True)
class State:
    """What the policy remembers between decisions."""

    rate_per_replica: float | None = None
    """Measured; None until the first measurement."""
    last_change: float | None = None
    low_since: float | None = None
    """Since when fewer replicas would have sufficed (None: they would not)."""
    low_peak: int = 0
    """The most replicas needed since ``low_since``."""
    idle_since: float | None = None
    """Since when there was no input, backlog nor unacknowledged message."""
    measured: bool = False
    """The rate per replica was sampled while replicas ran flat out (not a lower bound)."""
    probed: bool = False
    """The last scale-down tried fewer replicas than the estimate asked for: if they fall
    behind, the estimate has been tested (``measured``) and no more probing follows."""
    ready_replicas: int = 0
    """Ready replicas at the previous reading: a throughput sample counts only when they did
    not change in between (replicas that became ready meanwhile ran part of the time)."""


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: Reason
    message: str
    state: State

    @property
    def summary(self) -> str:
        """``Reason: message``, as status.autoscaling[].scalingReason shows it."""
        return f"{self.reason.value}: {self.message}"


def decide(objective: Objective, signals: Signals, state: State) -> Decision:
    """Desired replicas for one stage, the reason, and the state for the next decision."""
    s = signals
    unacked = max(0, s.unacked)
    busy = s.backlog > max(BUSY_BACKLOG_S * s.rate_out, MIN_BUSY_BACKLOG)
    steady = s.ready_replicas == state.ready_replicas
    per_replica = _measure(state.rate_per_replica, s, busy and steady)
    measured = state.measured or (busy and steady and per_replica is not None)
    active = s.backlog > 0 or s.rate_in > 0 or unacked > 0
    idle_since = None if active else (state.idle_since if state.idle_since is not None else s.now)
    idle_for = 0.0 if idle_since is None else s.now - idle_since
    state = replace(
        state,
        rate_per_replica=per_replica,
        measured=measured,
        idle_since=idle_since,
        ready_replicas=s.ready_replicas,
    )
    capacity = max(per_replica or PRIOR_RATE_PER_REPLICA, MIN_RATE_PER_REPLICA)
    demand = s.rate_in + s.backlog / objective.target_lag_s
    need = math.ceil(demand / capacity - 1e-9)
    floor = objective.min_replicas
    if floor == 0 and (active or idle_for < objective.idle_s_before_zero):
        floor = 1 if active or s.replicas > 0 else 0
    lo, hi = floor, objective.max_replicas
    why = (
        f"backlog {s.backlog}, input {s.rate_in:.1f}/s, {capacity:.1f}/s per replica, "
        f"target lag {objective.target_lag_s:g}s"
    )
    current = s.replicas
    if current > hi:
        return _change(hi, Reason.SCALED_DOWN, f"maxReplicas is {hi}", state, s.now)
    if current < lo:
        reason = Reason.SCALED_FROM_ZERO if current == 0 else Reason.SCALED_UP
        return _change(
            max(lo, min(need, hi)), reason, f"{why}: at least {lo} replicas", state, s.now
        )

    if need > current and current < hi:
        saturated = (
            s.queue_us_per_request is not None and s.queue_us_per_request > SATURATED_QUEUE_US
        )
        if saturated and current > 0:
            queued = (s.queue_us_per_request or 0) / 1000
            return _hold(
                current,
                Reason.BACKEND_SATURATED,
                f"{why}: {need} replicas needed, but the model backend queues requests "
                f"{queued:.0f} ms; more consumers would only lengthen its queue",
                state,
            )
        # From zero one replica starts even on a busy backend: a backlog must drain.
        step = 1 if saturated else max(2 * current, current + 4)
        target = max(min(need, hi, step), lo)
        reason = Reason.SCALED_FROM_ZERO if current == 0 else Reason.SCALED_UP
        if state.probed:
            state = replace(state, measured=True, probed=False)
        return _change(target, reason, f"{why}: {need} replicas drain it in time", state, s.now)

    wanted_down = math.ceil(demand / (capacity * DOWN_UTILIZATION) - 1e-9)
    target_down = max(wanted_down, lo)
    probing = not measured and not busy and s.ready_replicas == current
    if probing:
        # Capacity is only known as a lower bound (the replicas keep up): try with fewer,
        # after the same delay; if they fall behind, that measures it.
        target_down = min(target_down, max(lo, current - max(1, current // 4)))
    if target_down == 0 and current > 0:
        # Only reached after idleSecondsBeforeZero without input: that was the wait.
        return _change(
            0, Reason.SCALED_TO_ZERO, f"no input or backlog for {idle_for:.0f}s", state, s.now
        )
    if target_down < current:
        low_since = state.low_since if state.low_since is not None else s.now
        low_peak = max(target_down, state.low_peak) if state.low_since is not None else target_down
        state = replace(state, low_since=low_since, low_peak=low_peak)
        waited = s.now - low_since
        if waited >= objective.scale_down_delay_s and low_peak < current:
            message = f"{why}: {low_peak} replicas sufficed for {waited:.0f}s" + (
                " (trying fewer: capacity per replica not measured yet)" if probing else ""
            )
            state = replace(state, probed=probing and low_peak < max(wanted_down, lo))
            return _change(low_peak, Reason.SCALED_DOWN, message, state, s.now)
        return _hold(
            current,
            Reason.STABILIZING,
            f"{why}: {low_peak} replicas would do; waiting {objective.scale_down_delay_s:g}s "
            f"({waited:.0f}s so far)",
            state,
        )
    state = replace(state, low_since=None, low_peak=0)
    if objective.min_replicas == 0 and not active and current > 0:
        return _hold(
            current,
            Reason.IDLE,
            f"no input or backlog for {idle_for:.0f}s; zero after "
            f"{objective.idle_s_before_zero:g}s",
            state,
        )
    if need > current:
        return _hold(current, Reason.AT_MAXIMUM, f"{why}: {need} needed, maxReplicas {hi}", state)
    return _hold(current, Reason.STEADY, f"{why}: {current} replicas keep up", state)


def frozen(replicas: int, why: str, state: State) -> Decision:
    """No decision on missing data: replicas stay as they are, and the reason says why."""
    return Decision(replicas, Reason.SIGNALS_MISSING, f"replicas frozen: {why}", state)


def _measure(previous: float | None, s: Signals, flat_out: bool) -> float | None:
    """Per-replica throughput: a sample while the same replicas ran flat out (a backlog
    waited all along), else a lower bound."""
    if s.ready_replicas <= 0 or s.rate_out <= 0:
        return previous
    sample = s.rate_out / s.ready_replicas
    if not flat_out:
        return sample if previous is None else max(previous, sample)
    if previous is None:
        return sample
    return SMOOTHING * sample + (1 - SMOOTHING) * previous


def _hold(replicas: int, reason: Reason, message: str, state: State) -> Decision:
    return Decision(replicas, reason, message, state)


def _change(replicas: int, reason: Reason, message: str, state: State, now: float) -> Decision:
    return Decision(
        replicas, reason, message, replace(state, last_change=now, low_since=None, low_peak=0)
    )
