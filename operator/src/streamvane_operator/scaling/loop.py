"""One tick of one stage: readings in, a decision and what to remember out (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamvane_operator.api.pipeline import ScalingSpec
from streamvane_operator.scaling.policy import Decision, Objective, State, decide, frozen
from streamvane_operator.scaling.signals import (
    ModelCounters,
    SubscriptionReading,
    queue_us_per_request,
    signals,
)


@dataclass(frozen=True)
class StageMemory:
    """What the loop keeps per stage between ticks (in the operator's memory)."""

    reading: SubscriptionReading | None = None
    model: ModelCounters | None = None
    state: State = field(default_factory=State)


@dataclass(frozen=True)
class StageTick:
    objective: Objective
    replicas: int
    ready_replicas: int
    reading: SubscriptionReading | None
    """None when the subscription's stats could not be read (``missing`` says why)."""
    model: ModelCounters | None = None
    """The stage's model on its backend; None when it does not infer or has no metrics URL."""
    missing: str | None = None
    """Why a signal the stage needs is missing (Pulsar or Triton unreachable, no stats)."""


def tick(stage: StageTick, memory: StageMemory) -> tuple[Decision, StageMemory]:
    if stage.missing is not None or stage.reading is None:
        why = stage.missing or "no stats for the subscription"
        return frozen(stage.replicas, why, memory.state), memory
    queue_us = queue_us_per_request(memory.model, stage.model)
    decision = decide(
        stage.objective,
        signals(memory.reading, stage.reading, stage.replicas, stage.ready_replicas, queue_us),
        memory.state,
    )
    return decision, StageMemory(stage.reading, stage.model, decision.state)


def objective_of(scaling: ScalingSpec) -> Objective:
    return Objective(
        min_replicas=scaling.min_replicas,
        max_replicas=scaling.max_replicas,
        target_lag_s=float(scaling.target_lag_s),
        scale_down_delay_s=float(scaling.scale_down_delay_seconds),
        idle_s_before_zero=float(scaling.idle_seconds_before_zero),
    )
