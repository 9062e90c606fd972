"""Message schemas in Pulsar's schema registry, checked before any worker rolls.

Each topic a stage writes gets the Avro record of the stage type's output message as its JSON
schema, and each input topic the Pipeline created gets the record of what its stages read
(the contract for its producers). The registry accepts a new version only if it passes the
Pipeline's ``schemaCompatibility`` strategy (set on each of those topics) against the
registered ones; a refusal stops the reconcile before any Deployment is written, so the
workers of the last accepted spec keep running. Topics of others that a stage only reads are
left alone: their writer owns their schema.

Workers keep publishing and reading plain bytes: the broker does not check payloads against
the schema while ``isSchemaValidationEnforced`` is off (its default); the workers validate
every message against its model and dead-letter what does not fit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from streamvane_operator.api.pipeline import PipelineSpec, SchemaCompatibility
from streamvane_operator.pulsar.admin import PulsarAdmin, RegisteredSchema, TopicName, canonical
from streamvane_operator.pulsar.errors import PulsarIncompatibleSchema
from streamvane_operator.reconcile.status import (
    SCHEMAS_COMPATIBLE,
    DesiredCondition,
    Failure,
    Problem,
    desired_condition,
)
from streamvane_worker.config import MESSAGES_BY_STAGE, SIDE_INPUTS_BY_STAGE, side_input_topics
from streamvane_worker.schemas import message_schemas

MAX_DIFFERENCES = 5
AVRO_DETAIL = re.compile(r":?\s*Unable to read schema:.*", re.DOTALL)
"""Avro's reason goes on to print both schemas in full; the differences say it shorter."""


class SchemaRefused(Exception):
    """The registry refused the schema of one or more topics; nothing was rolled."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class SchemaTarget:
    topic: str
    """Local name within the Pipeline's tenant/namespace."""
    message: str
    """Name of the message model: its Avro record is the schema."""
    stages: tuple[str, ...]
    """Who puts the message there (or reads it), for the refusal's message."""


def pulsar_strategy(policy: SchemaCompatibility) -> str:
    """Backward -> BACKWARD, BackwardTransitive -> BACKWARD_TRANSITIVE, ..."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", policy.value).upper()


def schema_targets(spec: PipelineSpec, created: Collection[str]) -> list[SchemaTarget]:
    """The topics whose schema the Pipeline registers, in first-use order: every stage
    output (with the writer's output message) and every input no stage writes that the
    Pipeline created (``created``: local names), with its readers' input message."""
    found: dict[tuple[str, str], list[str]] = {}
    written = {t for s in spec.stages for t in s.outputs}
    for stage in spec.stages:
        reads, writes = MESSAGES_BY_STAGE[stage.type]
        side = SIDE_INPUTS_BY_STAGE.get(stage.type, {})
        inputs = {stage.input.topic: reads} | {
            topic: side[param]
            for param, topic in side_input_topics(stage.type, stage.typed_params()).items()
        }
        for topic, message in inputs.items():
            if topic not in written and topic in created:
                found.setdefault((topic, message), []).append(
                    f"stage {stage.name!r} ({stage.type.value}) reads"
                )
        for topic in stage.outputs:
            found.setdefault((topic, writes), []).append(
                f"stage {stage.name!r} ({stage.type.value}) writes"
            )
    return [SchemaTarget(topic, message, tuple(who)) for (topic, message), who in found.items()]


def ensure_schemas(
    admin: PulsarAdmin,
    tenant: str,
    namespace: str,
    targets: Sequence[SchemaTarget],
    policy: SchemaCompatibility,
    new_topics: Collection[str] = (),
) -> list[str]:
    """Set each target topic's compatibility strategy (on change) and register its schema;
    what was registered, for events. Raises SchemaRefused naming every refused topic, after
    trying them all (registering a compatible schema changes nothing that runs). Topics in
    ``new_topics`` (local names, created just now) have neither to read back."""
    strategy = pulsar_strategy(policy)
    schemas = message_schemas()
    registered: list[str] = []
    refused: list[str] = []
    for target in targets:
        topic = TopicName(tenant, namespace, target.topic)
        new = target.topic in new_topics
        if new or admin.schema_compatibility(topic) != strategy:
            admin.set_schema_compatibility(topic, strategy)
        before = None if new else admin.schema(topic)
        if before is not None and before.definition == canonical(schemas[target.message]):
            continue  # registered as the latest version already
        try:
            version = admin.register_schema(topic, schemas[target.message])
        except PulsarIncompatibleSchema as e:
            refused.append(refusal(target, topic, policy, before, schemas[target.message], e))
            continue
        if before is None or version > before.version:
            registered.append(f"schema {target.message} of {topic} (version {version})")
    if refused:
        raise SchemaRefused(refused)
    return registered


def condition(
    problem: Problem | None, targets: Sequence[SchemaTarget] | None, policy: SchemaCompatibility
) -> DesiredCondition | None:
    """SchemasCompatible after a reconcile that registered ``targets`` (None: it stopped
    before them, or at them with ``problem``); None when it says nothing new."""
    if problem is not None and problem.failure is Failure.INCOMPATIBLE_SCHEMA:
        return desired_condition(SCHEMAS_COMPATIBLE, False, problem.failure.value, problem.message)
    if targets is None:
        return None
    return desired_condition(
        SCHEMAS_COMPATIBLE,
        True,
        "Registered",
        f"the schemas of {len(targets)} topics are registered under {policy.value} compatibility",
    )


def refusal(
    target: SchemaTarget,
    topic: TopicName,
    policy: SchemaCompatibility,
    registered: RegisteredSchema | None,
    ours: dict[str, Any],
    error: PulsarIncompatibleSchema,
) -> str:
    """What a user needs to act on a refused schema: the topic, the stages, the strategy,
    which fields differ from the registered version, and the registry's own reason."""
    who = ", ".join(target.stages)
    against = "the registered one"
    if registered is not None:
        what = differences(_record(registered.definition), ours)
        against = f"the registered one (version {registered.version}, {registered.type})" + (
            ": " + "; ".join(what) if what else ""
        )
    reason = AVRO_DETAIL.sub("", error.reason or str(error))
    return (
        f"{who} {target.message} messages to {topic}, but their schema does not pass "
        f"{policy.value} compatibility (spec.schemaCompatibility) against {against}. "
        f"Pulsar: {reason}"
    )


def differences(registered: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """Field by field, how ``ours`` differs from the ``registered`` record (nested records of
    the same name compared in turn): changed types first, then required fields, then
    optional ones (what breaks compatibility before what seldom does); at most
    MAX_DIFFERENCES, and how many more."""
    found = sorted(_differences(registered, ours, ""), key=lambda d: d[0])
    shown = [text for _, text in found[:MAX_DIFFERENCES]]
    if len(found) > MAX_DIFFERENCES:
        shown.append(f"{len(found) - MAX_DIFFERENCES} more")
    return shown


def _differences(
    registered: dict[str, Any], ours: dict[str, Any], path: str
) -> list[tuple[int, str]]:
    before = {f["name"]: f for f in registered.get("fields", [])}
    after = {f["name"]: f for f in ours.get("fields", [])}
    found: list[tuple[int, str]] = []
    for name, field in after.items():
        where = f"{path}{name}"
        old = before.get(name)
        if old is None:
            found.append((_rank(field), f"{where!r} is new here ({_optional(field)})"))
        elif _nested(old["type"], field["type"]):
            found += _differences(old["type"], field["type"], f"{where}.")
        elif _type_name(old["type"]) != _type_name(field["type"]):
            found.append(
                (
                    0,
                    f"{where!r} is {_type_name(old['type'])} there, {_type_name(field['type'])} here",
                )
            )
    for name, field in before.items():
        if name not in after:
            found.append((_rank(field), f"{path}{name!r} is there ({_optional(field)}), not here"))
    return found


def _rank(field: dict[str, Any]) -> int:
    return 2 if "default" in field else 1


def _record(definition: str) -> dict[str, Any]:
    """A registered definition as a record; anything else compares as a record without fields."""
    try:
        parsed = json.loads(definition)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _optional(field: dict[str, Any]) -> str:
    return "optional" if "default" in field else "required"


def _nested(old: Any, new: Any) -> bool:
    return (
        isinstance(old, dict)
        and isinstance(new, dict)
        and old.get("type") == new.get("type") == "record"
        and old.get("name") == new.get("name")
    )


def _type_name(avro: Any) -> str:
    if isinstance(avro, list):
        return "|".join(_type_name(branch) for branch in avro)
    if isinstance(avro, dict):
        kind = str(avro.get("type"))
        if kind == "array":
            return f"array<{_type_name(avro['items'])}>"
        if kind == "map":
            return f"map<{_type_name(avro['values'])}>"
        return str(avro.get("name") or kind)
    return str(avro)
