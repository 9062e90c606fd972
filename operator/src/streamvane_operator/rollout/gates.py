"""Gate signals of one region from its Pulsar topic stats (pure).

Counters (messages published) are read from the pipeline's input, sink and dead-letter
topics; the gates count from a baseline taken when the region started its revision, so an
old revision's dead letters never fail a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.api.region import Counters, GateValues
from streamvane_operator.api.validation import dead_letter_topic, subscription_name

MIN_INPUT = 1
"""Input messages needed before the ratios mean anything (no traffic: no verdict)."""


@dataclass(frozen=True)
class Watched:
    """The topics whose stats feed the gates (local names)."""

    inputs: tuple[str, ...]
    sinks: tuple[str, ...]
    dead_letters: tuple[str, ...]
    subscriptions: tuple[tuple[str, str], ...]
    """(topic, subscription) of every stage."""

    @property
    def topics(self) -> tuple[str, ...]:
        stage_inputs = (topic for topic, _ in self.subscriptions)
        return tuple(dict.fromkeys((*self.inputs, *stage_inputs, *self.sinks, *self.dead_letters)))


def watched(namespace: str, pipeline: str, spec: PipelineSpec) -> Watched:
    """What the gates read of a member Pipeline (in ``namespace`` of its region)."""
    consumed = {s.input.topic for s in spec.stages}
    produced = {t for s in spec.stages for t in s.outputs}
    return Watched(
        inputs=tuple(dict.fromkeys(t for s in spec.stages if (t := s.input.topic) not in produced)),
        sinks=tuple(dict.fromkeys(t for s in spec.stages for t in s.outputs if t not in consumed)),
        dead_letters=tuple(dict.fromkeys(dead_letter_topic(pipeline, s) for s in spec.stages)),
        subscriptions=tuple(
            (s.input.topic, subscription_name(namespace, pipeline, s)) for s in spec.stages
        ),
    )


def counters(watch: Watched, stats: Mapping[str, Mapping[str, Any] | None]) -> Counters:
    """Totals from topic stats keyed by local topic name (None: the topic does not exist)."""

    def published(topics: tuple[str, ...]) -> int:
        return sum(int((stats.get(t) or {}).get("msgInCounter") or 0) for t in topics)

    return Counters(
        input=published(watch.inputs),
        dead_lettered=published(watch.dead_letters),
        output=published(watch.sinks),
    )


def lag_seconds(
    watch: Watched, stats: Mapping[str, Mapping[str, Any] | None], now_ms: int
) -> float:
    """Age of the oldest unacknowledged message over every stage subscription (0: none)."""
    oldest = 0.0
    for topic, subscription in watch.subscriptions:
        sub = ((stats.get(topic) or {}).get("subscriptions") or {}).get(subscription) or {}
        published = int(sub.get("earliestMsgPublishTimeInBacklog") or 0)
        if published > 0 and int(sub.get("msgBacklog") or 0) > 0:
            oldest = max(oldest, (now_ms - published) / 1000)
    return oldest


def gate_values(baseline: Counters, current: Counters, lag_s: float) -> GateValues:
    """Ratios since ``baseline``; a counter below its baseline (topic reloaded) counts from 0."""
    base = baseline if current.input >= baseline.input else Counters()
    inputs = current.input - base.input
    if inputs < MIN_INPUT:
        return GateValues(lag_seconds=lag_s, input_messages=inputs)
    return GateValues(
        dead_letter_ratio=round(max(0, current.dead_lettered - base.dead_lettered) / inputs, 4),
        lag_seconds=round(lag_s, 1),
        throughput_ratio=round(max(0, current.output - base.output) / inputs, 4),
        input_messages=inputs,
    )
