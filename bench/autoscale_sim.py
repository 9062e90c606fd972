"""Simulated autoscalers on the same input traces: Streamvane's policy, KEDA's Pulsar scaler
with the HPA, and Numaflow's vertex autoscaler. One-second steps; every replica consumes up
to ``capacity`` messages per second once ready, ``pod_start_s`` after it was requested;
removed replicas stop at once. Each controller sees what it would see in a cluster, at its
own cadence.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from streamvane_operator.scaling.policy import Objective, Signals, State, decide


@dataclass(frozen=True)
class World:
    capacity: float = 20.0
    """Messages per second one ready replica consumes."""
    pod_start_s: int = 10
    min_replicas: int = 0
    max_replicas: int = 10
    target_lag_s: float = 30.0
    scale_down_delay_s: float = 60.0
    idle_s_before_zero: float = 120.0


@dataclass(frozen=True)
class Observation:
    t: int
    backlog: int
    arrived: float
    """Messages published in the last second."""
    processed: float
    """Messages consumed in the last second."""
    replicas: int
    ready: int


class Controller:
    name: str
    period_s: int

    def decide(self, history: list[Observation]) -> int:
        raise NotImplementedError


class Streamvane(Controller):
    """The operator's policy, polled every 5 s (its default), rates over the last poll."""

    name = "Streamvane"
    period_s = 5

    def __init__(self, world: World) -> None:
        self.objective = Objective(
            world.min_replicas,
            world.max_replicas,
            world.target_lag_s,
            world.scale_down_delay_s,
            world.idle_s_before_zero,
        )
        self.state = State()

    def decide(self, history: list[Observation]) -> int:
        now, window = history[-1], history[-self.period_s :]
        signals = Signals(
            now=now.t,
            backlog=now.backlog,
            unacked=0,
            rate_in=sum(o.arrived for o in window) / len(window),
            rate_out=sum(o.processed for o in window) / len(window),
            replicas=now.replicas,
            ready_replicas=now.ready,
        )
        decision = decide(self.objective, signals, self.state)
        self.state = decision.state
        return decision.replicas


class KedaHpa(Controller):
    """KEDA's Pulsar scaler (``ceil(backlog / msgBacklogThreshold)``, threshold 10, activation
    at backlog > 0, polling 30 s, cooldown 300 s before zero) feeding the HPA (sync 15 s, 10 %
    tolerance, up by max(100 %, 4 pods) per 15 s, down after a 300 s stabilization window)."""

    period_s = 15

    def __init__(self, world: World, threshold: float = 10.0, label: str = "KEDA+HPA") -> None:
        self.name = label
        self.world = world
        self.threshold = threshold
        self.recommendations: deque[tuple[int, int]] = deque()
        self.last_active = -math.inf

    def decide(self, history: list[Observation]) -> int:
        now = history[-1]
        current = now.replicas
        # KEDA's own loop (every 30 s): activation from 0 to 1 and deactivation to 0.
        if now.t % 30 == 0:
            if now.backlog > 0:
                self.last_active = now.t
                if current == 0:
                    return max(1, self.world.min_replicas)
            elif current > 0 and now.t - self.last_active >= 300 and self.world.min_replicas == 0:
                self.recommendations.clear()
                return 0
        if current == 0:
            return 0  # the HPA is paused at zero; only KEDA activates
        ratio = now.backlog / (self.threshold * current)
        desired = current if abs(ratio - 1) <= 0.1 else math.ceil(now.backlog / self.threshold)
        desired = min(max(desired, 1, self.world.min_replicas), self.world.max_replicas)
        self.recommendations.append((now.t, desired))
        while self.recommendations and self.recommendations[0][0] <= now.t - 300:
            self.recommendations.popleft()
        if desired < current:
            desired = min(current, max(r for _, r in self.recommendations))
        if desired > current:
            desired = min(desired, max(2 * current, current + 4))
        return desired


class Numaflow(Controller):
    """Numaflow's source-vertex autoscaler: ``round(pending / rate / targetProcessingSeconds
    x replicas)`` with the rate averaged over a 120 s lookback, at most +/-2 replicas per
    step, 90 s cooldowns, to 0 when nothing is pending or processed, and a peek at 1 replica
    every 120 s (zeroReplicaSleepSeconds) while at 0."""

    name = "Numaflow"
    period_s = 10

    def __init__(self, world: World) -> None:
        self.world = world
        self.last_up = -math.inf
        self.last_down = -math.inf
        self.zero_since = 0

    def decide(self, history: list[Observation]) -> int:
        now, window = history[-1], history[-120:]
        current = now.replicas
        if current == 0:
            if now.t - self.zero_since >= 120:
                self.last_up = now.t
                return 1
            return 0
        rate = sum(o.processed for o in window) / len(window)
        if now.backlog == 0 and rate == 0:
            desired = 0
        elif rate == 0:
            desired = current + 2
        else:
            desired = round(now.backlog / rate / 20 * current)
        desired = min(max(desired, self.world.min_replicas), self.world.max_replicas)
        if desired > current:
            if now.t - self.last_up < 90:
                return current
            self.last_up = now.t
            return min(desired, current + 2)
        if desired < current:
            if now.t - self.last_down < 90 or now.t - self.last_up < 90:
                return current
            self.last_down = now.t
            target = max(desired, current - 2)
            if target == 0:
                self.zero_since = now.t
            return target
        return current


@dataclass
class Run:
    name: str
    backlog: np.ndarray
    replicas: np.ndarray
    arrivals: np.ndarray
    processed: np.ndarray
    changes: int
    first_scale_up_s: float | None
    timeline: list[tuple[int, int]] = field(default_factory=list)

    @property
    def replica_seconds(self) -> float:
        return float(self.replicas.sum())

    def lag(self) -> np.ndarray:
        """Seconds the oldest waiting message has waited, per second (FIFO)."""
        arrived = np.cumsum(self.arrivals)
        departed = np.cumsum(self.processed)
        times = np.arange(len(arrived))
        oldest = np.searchsorted(arrived, departed + 1e-6, side="left")
        return np.where(self.backlog > 1e-6, times - oldest, 0)

    @property
    def peak_lag_s(self) -> float:
        return float(self.lag().max())

    @property
    def drain_s(self) -> float:
        """The longest stretch with a backlog above one second of one replica's work."""
        longest = current = 0
        for b in self.backlog:
            current = current + 1 if b > 20 else 0
            longest = max(longest, current)
        return float(longest)


def simulate(
    world: World, arrivals: np.ndarray, make: Callable[[World], Controller], step_at: int = 0
) -> Run:
    controller = make(world)
    backlog = 0.0
    starting: list[int] = []  # ready times of requested replicas not ready yet
    ready = world.min_replicas
    requested = world.min_replicas
    history: list[Observation] = []
    out_backlog, out_replicas, out_processed = [], [], []
    changes = 0
    first_up: float | None = None
    timeline = [(0, requested)]
    for t, arrived in enumerate(arrivals):
        while starting and starting[0] <= t:
            starting.pop(0)
            ready += 1
        backlog += arrived
        processed = min(backlog, ready * world.capacity)
        backlog -= processed
        history.append(Observation(t, int(backlog), arrived, processed, requested, ready))
        if t > 0 and t % controller.period_s == 0:
            desired = controller.decide(history)
            if desired != requested:
                changes += 1
                timeline.append((t, desired))
                if desired > requested and first_up is None and t >= step_at:
                    first_up = t - step_at
                if desired > requested:
                    starting.extend([t + world.pod_start_s] * (desired - requested))
                else:
                    drop = requested - desired
                    cancelled = min(drop, len(starting))
                    del starting[len(starting) - cancelled :]
                    ready -= drop - cancelled
                requested = desired
        out_backlog.append(backlog)
        out_replicas.append(requested)
        out_processed.append(processed)
    return Run(
        controller.name,
        np.array(out_backlog),
        np.array(out_replicas, dtype=float),
        np.asarray(arrivals, dtype=float),
        np.array(out_processed),
        changes,
        first_up,
        timeline,
    )


def traces(duration_s: int = 900) -> dict[str, tuple[np.ndarray, int]]:
    """Name -> (messages published each second, when the load starts)."""
    t = np.arange(duration_s)
    step = np.zeros(duration_s)
    step[32] = 5000  # between polls: every autoscaler waits for its next one
    ramp = np.clip((t - 30) / 600, 0, 1) * 120.0 * (t < 750)
    sine = 60 + 50 * np.sin(2 * np.pi * t / 300)
    onoff = np.where((t // 60) % 3 == 0, 100.0, 0.0) * (t >= 30)
    constant = np.full(duration_s, 50.0)
    return {
        "step 5,000": (step, 32),
        "ramp 0-120/s": (ramp, 31),
        "sine 10-110/s": (np.round(sine), 0),
        "bursty on/off": (onoff, 30),
        "constant 50/s": (constant, 0),
        "idle": (np.zeros(duration_s), 0),
    }


def controllers() -> list[Callable[[World], Controller]]:
    return [
        Streamvane,
        KedaHpa,
        lambda w: KedaHpa(w, threshold=w.capacity * w.target_lag_s, label="KEDA+HPA (tuned)"),
        Numaflow,
    ]
