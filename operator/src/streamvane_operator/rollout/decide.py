"""The rollout across regions as one pure step: (desired revision, state, observations, time)
-> (next state, member writes, per-region phases).

The hub calls ``decide`` on every reconcile and does what it says; nothing here performs I/O.

A rollout walks its waves in order. A wave is written, must become healthy (every region runs
the revision, is Ready and passes the gates) within ``deadline_s``, then bakes for ``bake_s``
while staying healthy; then the next wave starts. A failure in any wave stops the rollout
there: later waves are never written. With ``Rollback`` every region that got the failed
revision is written back to the last good one; with ``Halt`` (or when there is no good
revision yet) they stay as they are. An unreachable region halts the rollout until it is back:
it is never skipped. A new desired revision supersedes whatever is going on and starts again
at the first wave.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from streamvane_operator.api.region import (
    Gates,
    GateValues,
    OnFailure,
    RegionPhase,
    RolloutPhase,
)

UNREACHABLE = "Unreachable"
GATE_FAILED = "GateFailed"
DEADLINE_EXCEEDED = "DeadlineExceeded"
ROLLBACK_FAILED = "RollbackFailed"
SUPERSEDED = "Superseded"

TERMINAL = frozenset({RolloutPhase.COMPLETE, RolloutPhase.ROLLED_BACK, RolloutPhase.FAILED})


@dataclass(frozen=True)
class Policy:
    waves: tuple[tuple[str, ...], ...]
    bake_s: float
    deadline_s: float
    gates: Gates
    on_failure: OnFailure


@dataclass(frozen=True)
class Observation:
    """What the hub saw of one region's member Pipeline."""

    reachable: bool
    revision: str = ""
    """Hub revision the member Pipeline is labelled with; empty when there is none."""
    ready: bool = False
    """The member operator reports Ready for the member's current generation."""
    gates: GateValues | None = None
    """Gate signals counted since the region started ``revision``; None: not measured."""
    message: str = ""
    """Why unreachable or not ready, as the hub or the member says it."""


@dataclass(frozen=True)
class State:
    revision: str
    last_good: str
    wave: int
    """Index into the policy's waves."""
    phase: RolloutPhase
    since: datetime
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Write:
    region: str
    revision: str


@dataclass(frozen=True)
class RegionView:
    phase: RegionPhase
    message: str = ""


@dataclass(frozen=True)
class Decision:
    state: State
    writes: tuple[Write, ...]
    regions: Mapping[str, RegionView]


def default_waves(regions: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """One region first (a canary), then the rest together."""
    return (regions[:1], regions[1:]) if len(regions) > 1 else (regions,)


def gate_failure(gates: Gates, values: GateValues | None) -> str:
    """Which gate ``values`` violate, as a message; empty when none (or nothing measured)."""
    if values is None:
        return ""
    failed = []
    if (
        gates.max_dead_letter_ratio is not None
        and values.dead_letter_ratio is not None
        and values.dead_letter_ratio > gates.max_dead_letter_ratio
    ):
        failed.append(
            f"dead-letter ratio {values.dead_letter_ratio:.2f} > {gates.max_dead_letter_ratio:g}"
        )
    if (
        gates.max_lag_seconds is not None
        and values.lag_seconds is not None
        and values.lag_seconds > gates.max_lag_seconds
    ):
        failed.append(f"lag {values.lag_seconds:.0f}s > {gates.max_lag_seconds:g}s")
    if (
        gates.min_throughput_ratio is not None
        and values.throughput_ratio is not None
        and values.throughput_ratio < gates.min_throughput_ratio
    ):
        failed.append(
            f"throughput ratio {values.throughput_ratio:.2f} < {gates.min_throughput_ratio:g}"
        )
    return "; ".join(failed)


def decide(
    desired: str,
    policy: Policy,
    previous: State | None,
    observed: Mapping[str, Observation],
    now: datetime,
) -> Decision:
    """The next step of the rollout of ``desired``. ``observed`` has every placed region."""
    if previous is None or previous.revision != desired:
        superseded = previous is not None and previous.phase not in TERMINAL
        state = State(
            revision=desired,
            last_good=previous.last_good if previous else "",
            wave=0,
            phase=RolloutPhase.PROGRESSING,
            since=now,
            reason=SUPERSEDED if superseded else "",
            message=f"supersedes {previous.revision}" if previous and superseded else "",
        )
    else:
        state = previous
    return _Step(policy, observed, now).run(state)


class _Step:
    def __init__(self, policy: Policy, observed: Mapping[str, Observation], now: datetime) -> None:
        self.policy = policy
        self.observed = observed
        self.now = now

    def run(self, state: State) -> Decision:
        handler = {
            RolloutPhase.PROGRESSING: self._progressing,
            RolloutPhase.BAKING: self._baking,
            RolloutPhase.HALTED: self._halted,
            RolloutPhase.ROLLING_BACK: self._rolling_back,
            RolloutPhase.COMPLETE: self._complete,
        }.get(state.phase)
        if handler is None:  # RolledBack, Failed: wait for a new revision
            return self._decision(state, ())
        return handler(state)

    # phases

    def _progressing(self, state: State) -> Decision:
        wave = self.policy.waves[state.wave]
        if halted := self._unreachable(state, wave):
            return halted
        writes = tuple(
            Write(r, state.revision) for r in wave if self.observed[r].revision != state.revision
        )
        if failed := self._gate_failures(state, wave):
            return self._fail(state, GATE_FAILED, failed)
        if all(self._healthy(r, state.revision) for r in wave):
            return self.run(replace(state, phase=RolloutPhase.BAKING, since=self.now, message=""))
        if self._elapsed(state) > self.policy.deadline_s:
            waiting = "; ".join(
                f"{r}: {self.observed[r].message or 'not ready'}"
                for r in wave
                if not self._healthy(r, state.revision)
            )
            return self._fail(
                state,
                DEADLINE_EXCEEDED,
                f"not healthy within {self.policy.deadline_s:g}s ({waiting})",
            )
        return self._decision(state, writes)

    def _baking(self, state: State) -> Decision:
        wave = self.policy.waves[state.wave]
        if halted := self._unreachable(state, wave):
            return halted
        if failed := self._gate_failures(state, wave):
            return self._fail(state, GATE_FAILED, failed)
        unhealthy = [r for r in wave if not self._healthy(r, state.revision)]
        if unhealthy:
            return self._fail(
                state,
                GATE_FAILED,
                "; ".join(f"{r}: {self.observed[r].message or 'not ready'}" for r in unhealthy)
                + " while baking",
            )
        if self._elapsed(state) < self.policy.bake_s:
            return self._decision(state, ())
        if state.wave + 1 == len(self.policy.waves):
            done = replace(
                state,
                phase=RolloutPhase.COMPLETE,
                since=self.now,
                last_good=state.revision,
                reason="",
                message="",
            )
            return self._decision(done, ())
        following = replace(
            state, wave=state.wave + 1, phase=RolloutPhase.PROGRESSING, since=self.now, reason=""
        )
        return self.run(following)

    def _halted(self, state: State) -> Decision:
        if state.reason != UNREACHABLE:
            return self._decision(state, ())  # a failed gate under Halt waits for a new revision
        wave = self.policy.waves[state.wave]
        if any(not self.observed[r].reachable for r in wave):
            return self._unreachable(state, wave) or self._decision(state, ())
        # Back: the wave starts over (its deadline and bake time count again).
        return self.run(
            replace(state, phase=RolloutPhase.PROGRESSING, since=self.now, reason="", message="")
        )

    def _rolling_back(self, state: State) -> Decision:
        targets = self._touched(state)
        writes = tuple(
            Write(r, state.last_good)
            for r in targets
            if self.observed[r].reachable and self.observed[r].revision != state.last_good
        )
        if all(self._healthy(r, state.last_good) for r in targets):
            back = replace(state, phase=RolloutPhase.ROLLED_BACK, since=self.now)
            return self._decision(back, ())
        if self._elapsed(state) > self.policy.deadline_s:
            stuck = "; ".join(
                f"{r}: {self.observed[r].message or 'not ready'}"
                for r in targets
                if not self._healthy(r, state.last_good)
            )
            failed = replace(
                state,
                phase=RolloutPhase.FAILED,
                since=self.now,
                reason=ROLLBACK_FAILED,
                message=f"rollback to {state.last_good} not healthy within "
                f"{self.policy.deadline_s:g}s ({stuck}); after: {state.message}",
            )
            return self._decision(failed, ())
        return self._decision(state, writes)

    def _complete(self, state: State) -> Decision:
        # Repair: a member that lost the revision (deleted, edited) gets it back.
        writes = tuple(
            Write(r, state.revision)
            for wave in self.policy.waves
            for r in wave
            if self.observed[r].reachable and self.observed[r].revision != state.revision
        )
        return self._decision(state, writes)

    # transitions

    def _fail(self, state: State, reason: str, message: str) -> Decision:
        wave = f"wave {state.wave + 1}: {message}"
        if self.policy.on_failure is OnFailure.ROLLBACK and state.last_good:
            back = replace(
                state,
                phase=RolloutPhase.ROLLING_BACK,
                since=self.now,
                reason=reason,
                message=f"{wave}; rolling back to {state.last_good}",
            )
            return self._rolling_back(back)
        why = "" if self.policy.on_failure is OnFailure.HALT else "; no good revision to restore"
        halted = replace(
            state, phase=RolloutPhase.HALTED, since=self.now, reason=reason, message=wave + why
        )
        return self._decision(halted, ())

    def _unreachable(self, state: State, wave: tuple[str, ...]) -> Decision | None:
        lost = [r for r in wave if not self.observed[r].reachable]
        if not lost:
            return None
        message = "; ".join(f"{r} unreachable: {self.observed[r].message}" for r in lost)
        keep_since = state.phase is RolloutPhase.HALTED and state.reason == UNREACHABLE
        halted = replace(
            state,
            phase=RolloutPhase.HALTED,
            since=state.since if keep_since else self.now,
            reason=UNREACHABLE,
            message=f"wave {state.wave + 1} halted: {message}",
        )
        return self._decision(halted, ())

    # helpers

    def _elapsed(self, state: State) -> float:
        return (self.now - state.since).total_seconds()

    def _healthy(self, region: str, revision: str) -> bool:
        seen = self.observed[region]
        return seen.reachable and seen.revision == revision and seen.ready

    def _gate_failures(self, state: State, wave: tuple[str, ...]) -> str:
        return "; ".join(
            f"{r}: {failed}"
            for r in wave
            if self.observed[r].revision == state.revision
            and (failed := gate_failure(self.policy.gates, self.observed[r].gates))
        )

    def _touched(self, state: State) -> tuple[str, ...]:
        """Regions of the waves the revision reached (the current one included)."""
        return tuple(r for wave in self.policy.waves[: state.wave + 1] for r in wave)

    def _decision(self, state: State, writes: tuple[Write, ...]) -> Decision:
        return Decision(
            state, writes, {r: self._view(state, r) for w in self.policy.waves for r in w}
        )

    def _view(self, state: State, region: str) -> RegionView:
        seen = self.observed[region]
        if not seen.reachable:
            return RegionView(RegionPhase.UNREACHABLE, seen.message)
        index = next(i for i, w in enumerate(self.policy.waves) if region in w)
        failed = (
            gate_failure(self.policy.gates, seen.gates) if seen.revision == state.revision else ""
        )
        phase = state.phase
        if phase is RolloutPhase.COMPLETE:
            healthy = self._healthy(region, state.revision)
            return RegionView(RegionPhase.HEALTHY if healthy else RegionPhase.PROGRESSING)
        if index > state.wave:
            return RegionView(RegionPhase.PENDING, f"waits for wave {index + 1}")
        if phase in (RolloutPhase.ROLLING_BACK, RolloutPhase.ROLLED_BACK):
            if self._healthy(region, state.last_good):
                return RegionView(RegionPhase.ROLLED_BACK, f"runs {state.last_good}")
            return RegionView(RegionPhase.PROGRESSING, f"rolling back to {state.last_good}")
        if phase is RolloutPhase.FAILED and not self._healthy(region, state.last_good):
            return RegionView(RegionPhase.FAILED, state.message)
        halted_here = (
            phase is RolloutPhase.HALTED and index == state.wave and state.reason != UNREACHABLE
        )
        if failed or halted_here:
            return RegionView(RegionPhase.FAILED, failed or state.message)
        if index < state.wave:
            return RegionView(RegionPhase.HEALTHY)
        if phase is RolloutPhase.BAKING:
            return RegionView(RegionPhase.BAKING)
        if self._healthy(region, state.revision):
            return RegionView(RegionPhase.HEALTHY)
        return RegionView(RegionPhase.PROGRESSING, seen.message)
