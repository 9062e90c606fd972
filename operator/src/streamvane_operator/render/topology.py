"""The Pulsar resources a Pipeline needs: topics, their policies and stage subscriptions."""

from __future__ import annotations

from dataclasses import dataclass

from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.api.validation import (
    dead_letter_topic,
    late_topic_of,
    side_topics,
    state_topic,
    subscription_name,
)
from streamvane_worker.config import STATEFUL_STAGES, StageType, attempts_topic_of

STATE_COMPACTION_THRESHOLD_BYTES = 16 * 1024 * 1024
"""Backlog past the last compaction at which Pulsar compacts a state topic again."""


def qualified(tenant: str, namespace: str, topic: str) -> str:
    """The fully qualified name of a topic local to a pipeline's namespace."""
    return f"persistent://{tenant}/{namespace}/{topic}"


@dataclass(frozen=True)
class Topic:
    name: str
    """Local name within the pipeline's tenant/namespace."""
    partitions: int
    """0 means non-partitioned."""
    state: bool = False
    """A stateful stage's checkpoints: compacted, kept forever, never partitioned."""


@dataclass(frozen=True)
class Subscription:
    stage: str
    topic: str
    name: str


@dataclass(frozen=True)
class Topology:
    tenant: str
    namespace: str
    topics: tuple[Topic, ...]
    subscriptions: tuple[Subscription, ...]
    retention_minutes: int
    retention_size_mb: int
    produced: frozenset[str]
    """Topics the workers publish to (stage outputs and dead-letter topics)."""
    deduplicated: frozenset[str] = frozenset()
    """Outputs of effectively-once stages: the broker de-duplicates them."""
    side_subscriptions: tuple[Subscription, ...] = ()
    """A stage's subscriptions on its side inputs (same name as on its input)."""

    def topic(self, local: str) -> str:
        return qualified(self.tenant, self.namespace, local)

    @property
    def stage_subscriptions(self) -> dict[str, str]:
        """Stage -> its subscription as ``persistent://tenant/namespace/topic#name``."""
        return {s.stage: f"{self.topic(s.topic)}#{s.name}" for s in self.subscriptions}

    @property
    def all_subscriptions(self) -> tuple[Subscription, ...]:
        """Stage input subscriptions, then side-input subscriptions."""
        return (*self.subscriptions, *self.side_subscriptions)

    @property
    def subscription_names(self) -> list[str]:
        """Every subscription, as ``persistent://tenant/namespace/topic#name``."""
        return [f"{self.topic(s.topic)}#{s.name}" for s in self.all_subscriptions]


def topology(namespace: str, pipeline: str, spec: PipelineSpec) -> Topology:
    """Topics in first-use order: data topics use the policy's partitions, dead-letter
    topics are non-partitioned (that is what the Pulsar client creates for them), and so are
    the state topics of stateful stages (one reader rebuilds a replica's state from one)."""
    data: dict[str, None] = {}
    for stage in spec.stages:
        data[stage.input.topic] = None
        data.update(dict.fromkeys(side_topics(stage)))
        data.update(dict.fromkeys(stage.outputs))
    lates = dict.fromkeys(
        late_topic_of(pipeline, s) for s in spec.stages if s.type is StageType.TRAINING_EXAMPLES
    )
    dead_letters = dict.fromkeys(dead_letter_topic(pipeline, s) for s in spec.stages)
    states = dict.fromkeys(
        state_topic(pipeline, s) for s in spec.stages if s.type in STATEFUL_STAGES
    )
    # Dead-letter topics and the workers' attempt journals beside them, late-event topics.
    worker_topics = dead_letters | dict.fromkeys(attempts_topic_of(d) for d in dead_letters) | lates
    topics = (
        [Topic(name, spec.topics.partitions) for name in data]
        + [Topic(name, 0) for name in worker_topics if name not in data]
        + [Topic(name, 0, state=True) for name in states if name not in data]
    )
    return Topology(
        tenant=spec.pulsar.tenant,
        namespace=spec.pulsar.namespace,
        topics=tuple(topics),
        subscriptions=tuple(
            Subscription(
                stage.name, stage.input.topic, subscription_name(namespace, pipeline, stage)
            )
            for stage in spec.stages
        ),
        side_subscriptions=tuple(
            Subscription(stage.name, topic, subscription_name(namespace, pipeline, stage))
            for stage in spec.stages
            for topic in side_topics(stage)
        ),
        retention_minutes=spec.topics.retention_minutes,
        retention_size_mb=spec.topics.retention_size_mb,
        produced=frozenset(t for s in spec.stages for t in s.outputs)
        | frozenset(worker_topics)
        | frozenset(states),
        deduplicated=frozenset(t for s in spec.stages if s.effectively_once for t in s.outputs),
    )
