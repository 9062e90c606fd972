"""Checks a spec must pass beyond its schema, each reported as a message a user can act on."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from streamvane_operator.api.backend import InferenceBackendSpec, ManagedSpec
from streamvane_operator.api.common import DNS_1035, MAX_NAME
from streamvane_operator.api.pipeline import PipelineSpec, StageSpec
from streamvane_worker.config import (
    MESSAGES_BY_STAGE,
    PARAMS_BY_STAGE,
    SIDE_INPUTS_BY_STAGE,
    STAGES_NEEDING_MODEL,
    OnlineTrainingParams,
    StageType,
    late_topic,
    side_input_topics,
)

M = TypeVar("M", bound=BaseModel)

LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"


MAX_PROBLEMS = 20
"""Problems named in one message; a status condition and an event stay readable (and small)."""


class InvalidSpecError(ValueError):
    """The spec cannot be reconciled as written; ``problems`` says what to change."""

    def __init__(self, problems: list[str]) -> None:
        shown = [p[:1000] for p in problems[:MAX_PROBLEMS]]
        more = len(problems) - len(shown)
        super().__init__("; ".join(shown) + (f"; and {more} more problems" if more > 0 else ""))
        self.problems = problems


def describe(error: ValidationError, prefix: str) -> list[str]:
    """One line per pydantic error, located like kubectl does (``spec.stages[0].name``)."""
    lines = []
    for item in error.errors():
        path = prefix
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        lines.append(f"{path}: {item['msg']}")
    return lines


def parse(model: type[M], raw: Mapping[str, object], prefix: str = "spec") -> M:
    """Parse ``raw`` into ``model`` or raise InvalidSpecError with readable problems."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise InvalidSpecError(describe(e, prefix)) from e


def name_problems(kind: str, name: str, children: Iterable[str] = ()) -> list[str]:
    """What is wrong with ``name`` as the name of a ``kind`` whose objects are named
    ``<name><suffix>`` for each of ``children``: it becomes label values, selectors and
    Service names, so it is checked before anything is read or written with it."""
    found = []
    if len(name) > MAX_NAME or not re.fullmatch(DNS_1035, name):
        found.append(
            f"{kind} name {name!r} must be at most {MAX_NAME} lowercase letters, digits and "
            "'-', start with a letter and end with a letter or digit (it names Services "
            "and labels); re-create it under such a name"
        )
    for suffix in children:
        child = f"{name}{suffix}"
        if len(child) > MAX_NAME:
            found.append(
                f"{child!r} (named after the {kind}) is longer than {MAX_NAME} characters; "
                f"shorten the {kind} name or {suffix.lstrip('-')!r}"
            )
    return found


def is_label_value(value: str) -> bool:
    """Whether ``value`` can be a label value (and so appear in a label selector)."""
    return len(value) <= MAX_NAME and bool(re.fullmatch(LABEL_VALUE, value))


def stage_suffixes(raw_spec: Mapping[str, object]) -> list[str]:
    """``-<stage>`` of every stage name in a raw Pipeline spec (parsable or not)."""
    stages = raw_spec.get("stages")
    names = (
        [s.get("name") for s in stages if isinstance(s, dict)] if isinstance(stages, list) else []
    )
    return [f"-{n}" for n in names if isinstance(n, str)]


def pipeline_problems(
    name: str,
    spec: PipelineSpec,
    backends: Mapping[str, InferenceBackendSpec],
    namespace: str,
) -> list[str]:
    """Everything wrong with a schema-valid Pipeline; empty when it can be reconciled.

    ``backends`` holds the InferenceBackends that exist in the Pipeline's ``namespace``.
    """
    return [
        *_name_problems(name, spec),
        *_stage_problems(spec, backends),
        *_topic_problems(namespace, name, spec),
        *_message_problems(spec),
        *_cycle_problems(spec),
    ]


def _name_problems(name: str, spec: PipelineSpec) -> Iterator[str]:
    yield from name_problems("Pipeline", name, [f"-{stage.name}" for stage in spec.stages])
    counts = Counter(stage.name for stage in spec.stages)
    for stage_name, count in counts.items():
        if count > 1:
            yield f"stage name {stage_name!r} is used {count} times; stage names must be unique"


def _stage_problems(
    spec: PipelineSpec, backends: Mapping[str, InferenceBackendSpec]
) -> Iterator[str]:
    for i, stage in enumerate(spec.stages):
        where = f"spec.stages[{i}] ({stage.name!r})"
        if stage.input.topic in stage.outputs:
            yield (
                f"{where} publishes to its own input topic {stage.input.topic!r}; "
                "remove it from outputs"
            )
        for topic in side_topics(stage):
            if topic == stage.input.topic or topic in stage.outputs:
                yield (
                    f"{where} reads {topic!r} as a side input, which is also its input or one "
                    "of its outputs; name another topic"
                )
        if stage.type in STAGES_NEEDING_MODEL and stage.model is None:
            yield f"{where}: stage type {stage.type.value!r} needs a model (backend and name)"
        if stage.model is not None:
            yield from _backend_problems(where, stage.model.backend, backends)
        try:
            params = PARAMS_BY_STAGE[stage.type].model_validate(stage.typed_params())
        except ValidationError as e:
            yield from describe(e, f"{where}.params")
            continue
        if isinstance(params, OnlineTrainingParams) and stage.model is not None:
            backend = backends.get(stage.model.backend)
            if backend is not None and backend.managed is not None:
                yield from _trainer_backend_problems(
                    where, stage.model.backend, backend.managed, params
                )


def _trainer_backend_problems(
    where: str, name: str, managed: ManagedSpec, params: OnlineTrainingParams
) -> Iterator[str]:
    """A trainer writes versions into the managed server's repository and has it load them."""
    backend = f"InferenceBackend {name!r}"
    repository = managed.model_repository
    if managed.model_control != "explicit":
        yield (
            f"{where}: online-training loads its versions through Triton's repository API: "
            f"set spec.managed.modelControl: explicit on {backend}"
        )
    if repository.persistent_volume_claim is None:
        yield (
            f"{where}: online-training writes its versions into the model repository: {backend} "
            "needs it on a PersistentVolumeClaim (spec.managed.modelRepository"
            ".persistentVolumeClaim, mounted at /models in Triton and in the trainer)"
        )
    elif params.model_repository.rstrip("/") != repository.uri.rstrip("/"):
        yield (
            f"{where}.params.modelRepository {params.model_repository!r} must be the path "
            f"{backend} serves, {repository.uri!r} (its volume is mounted at the same place "
            "in the trainer)"
        )


def _backend_problems(
    where: str, name: str, backends: Mapping[str, InferenceBackendSpec]
) -> Iterator[str]:
    backend = backends.get(name)
    if backend is None:
        known = ", ".join(sorted(backends)) or "none"
        yield (
            f"{where}: InferenceBackend {name!r} does not exist in this namespace "
            f"(existing: {known}); create it or fix model.backend"
        )


def _topic_problems(namespace: str, name: str, spec: PipelineSpec) -> Iterator[str]:
    data_topics = (
        {s.input.topic for s in spec.stages}
        | {t for s in spec.stages for t in s.outputs}
        | {t for s in spec.stages for t in side_topics(s)}
    )
    for stage in spec.stages:
        dlq = dead_letter_topic(name, stage)
        if dlq in data_topics:
            yield (
                f"stage {stage.name!r}: dead-letter topic {dlq!r} is also a data topic; "
                "choose another delivery.deadLetterTopic"
            )
        if stage.type is StageType.TRAINING_EXAMPLES:
            late = late_topic_of(name, stage)
            if late in data_topics or late == dlq:
                yield (
                    f"stage {stage.name!r}: late-events topic {late!r} is also a data or "
                    "dead-letter topic; choose another params.lateTopic"
                )
    subscribers = Counter(
        (s.input.topic, subscription_name(namespace, name, s)) for s in spec.stages
    )
    for (topic, subscription), count in subscribers.items():
        if count > 1:
            yield (
                f"{count} stages share subscription {subscription!r} on topic {topic!r} and "
                "would split its messages; give each stage its own input.subscription"
            )


def _message_problems(spec: PipelineSpec) -> Iterator[str]:
    """A stage must read the message type the stages feeding its input topic write."""
    producers: dict[str, list[StageSpec]] = {}
    for stage in spec.stages:
        for topic in stage.outputs:
            producers.setdefault(topic, []).append(stage)
    for stage in spec.stages:
        reads = {stage.input.topic: MESSAGES_BY_STAGE[stage.type][0]}
        side = SIDE_INPUTS_BY_STAGE.get(stage.type, {})
        reads |= {
            t: side[p] for p, t in side_input_topics(stage.type, stage.typed_params()).items()
        }
        for topic, message in reads.items():
            for producer in producers.get(topic, []):
                writes = MESSAGES_BY_STAGE[producer.type][1]
                if writes != message:
                    yield (
                        f"stage {stage.name!r} ({stage.type.value}) reads {message} messages "
                        f"but its input topic {topic!r} gets {writes} messages from stage "
                        f"{producer.name!r} ({producer.type.value}); feed it from a stage "
                        f"that writes {message}"
                    )


def side_topics(stage: StageSpec) -> list[str]:
    """The local topics a stage reads besides its input (with the same subscription)."""
    return list(side_input_topics(stage.type, stage.typed_params()).values())


def late_topic_of(pipeline: str, stage: StageSpec) -> str:
    """Where a training-examples stage sends engagements that join nothing."""
    return late_topic(pipeline, stage.name, stage.typed_params())


def state_topic(pipeline: str, stage: StageSpec) -> str:
    """The compacted topic a stateful stage checkpoints its keyed state to."""
    return f"{pipeline}-{stage.name}-state"


def _cycle_problems(spec: PipelineSpec) -> Iterator[str]:
    consumers: dict[str, list[StageSpec]] = {}
    for stage in spec.stages:
        consumers.setdefault(stage.input.topic, []).append(stage)
    downstream = {
        stage.name: sorted(
            {c.name for t in stage.outputs for c in consumers.get(t, []) if c.name != stage.name}
        )
        for stage in spec.stages
    }
    cycle = _find_cycle(downstream)
    if cycle:
        yield (
            "stages form a cycle ("
            + " -> ".join(cycle)
            + "); messages would loop forever, break it by changing an output topic"
        )


def _find_cycle(graph: Mapping[str, list[str]]) -> list[str]:
    """A cycle as a path that starts and ends at the same node, or [] when acyclic."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        for nxt in graph.get(node, []):
            found = visit(nxt, [*path, node])
            if found:
                return found
        done.add(node)
        return []

    for start in graph:
        found = visit(start, [])
        if found:
            return found
    return []


def subscription_name(namespace: str, pipeline: str, stage: StageSpec) -> str:
    """``input.subscription``, else ``<namespace>.<pipeline>-<stage>``: the Kubernetes
    namespace makes it unique among Pipelines sharing a Pulsar namespace."""
    return stage.input.subscription or default_subscription(namespace, pipeline, stage.name)


def default_subscription(namespace: str, pipeline: str, stage: str) -> str:
    return f"{namespace}.{pipeline}-{stage}"


def legacy_subscription(pipeline: str, stage: str) -> str:
    """The default subscription name before it held the namespace (kept by running stages)."""
    return f"{pipeline}-{stage}"


def dead_letter_topic(pipeline: str, stage: StageSpec) -> str:
    return stage.delivery.dead_letter_topic or f"{pipeline}-{stage.name}-dlq"
