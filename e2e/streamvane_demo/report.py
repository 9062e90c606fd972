"""Pure pieces of the demo: which topics to watch, and what to print about the results."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.api.validation import dead_letter_topic
from streamvane_operator.render.topology import qualified


@dataclass(frozen=True)
class StageTopics:
    name: str
    input_topic: str
    output_topics: tuple[str, ...]
    dead_letter_topic: str


@dataclass(frozen=True)
class StageCounts:
    stage: str
    messages_in: int
    messages_out: int
    dead_lettered: int


@dataclass(frozen=True)
class PipelineRun:
    stages: tuple[StageTopics, ...]
    input_topic: str
    """Where producers publish: the input no stage produces."""
    sink_topic: str
    """Where results land: the output no stage consumes."""

    @classmethod
    def from_spec(cls, name: str, raw_spec: dict[str, Any]) -> PipelineRun:
        spec = PipelineSpec.model_validate(raw_spec)

        def q(topic: str) -> str:
            return qualified(spec.pulsar.tenant, spec.pulsar.namespace, topic)

        stages = tuple(
            StageTopics(
                s.name,
                q(s.input.topic),
                tuple(q(t) for t in s.outputs),
                q(dead_letter_topic(name, s)),
            )
            for s in spec.stages
        )
        consumed = {s.input_topic for s in stages}
        produced = {t for s in stages for t in s.output_topics}
        return cls(
            stages=stages,
            input_topic=next(s.input_topic for s in stages if s.input_topic not in produced),
            sink_topic=next(t for s in stages for t in s.output_topics if t not in consumed),
        )


def latency_percentiles(latencies_s: list[float]) -> tuple[float, float]:
    """(p50, p99) of the given latencies."""
    if len(latencies_s) == 1:
        return latencies_s[0], latencies_s[0]
    cuts = statistics.quantiles(latencies_s, n=100, method="inclusive")
    return cuts[49], cuts[98]


def sample_rows(
    enriched: list[dict[str, Any]], limit: int = 12
) -> list[tuple[str, str, str, str, str]]:
    """One row per distinct source item: every flagged one first, then allowed ones."""
    by_source: dict[str, dict[str, Any]] = {}
    for item in enriched:
        by_source.setdefault(item.get("title", item["id"]), item)
    ordered = sorted(
        by_source.values(),
        key=lambda i: (i.get("safety", {}).get("decision") == "allow", i["id"]),
    )
    rows = []
    for item in ordered[:limit]:
        safety = item.get("safety") or {}
        tags = ", ".join(f"{t['name']} {t['score']:.2f}" for t in item.get("tags") or [])
        rows.append(
            (
                item.get("title", item["id"])[:48],
                str(item.get("category", "-")),
                tags or "-",
                str(safety.get("decision", "-")),
                ", ".join(safety.get("flagged", [])) or "-",
            )
        )
    return rows
