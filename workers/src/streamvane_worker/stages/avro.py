"""Each message model as an Avro record: what Pulsar's schema registry stores for a JSON topic.

Pulsar's ``JSON`` schema type holds an Avro record definition and checks compatibility between
versions with Avro's rules (a field a reader lacks is skipped; a field a reader needs must be
in the data or have a default). The record follows the JSON on the wire: camelCase names,
datetimes as ISO-8601 strings, ``T | None`` as a union with null (default null), fields with a
default optional. Built from pydantic's JSON Schema of the model, so it follows the model.

``python -m streamvane_worker.stages.avro`` (``make schemas``) writes every stage type's
messages to ``streamvane_worker/message_schemas.json``, which the operator reads (it does not
import the stage modules and their dependencies); a unit test fails when it drifts.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from streamvane_worker.schemas import SCHEMAS_FILE, SchemaMap
from streamvane_worker.stages import REGISTRY

NAMESPACE = "io.streamvane.messages"
AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PRIMITIVES = {"string": "string", "integer": "long", "number": "double", "boolean": "boolean"}


class Unsupported(ValueError):
    """A model uses a type the converter has no Avro form for."""


def avro_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The Avro record of ``model`` as its JSON is validated (fields with defaults optional)."""
    root = model.model_json_schema(by_alias=True, ref_template="{model}")
    return _Converter(root.get("$defs", {})).record(model.__name__, root)


def message_schemas() -> SchemaMap:
    """Every message a stage type reads or writes, by model name."""
    models = {m.__name__: m for kind in REGISTRY.values() for m in (kind.input, kind.output)}
    return {name: avro_schema(models[name]) for name in sorted(models)}


class _Converter:
    """Named types (records, enums) are defined where first used, then referred to by name."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self._defs = defs
        self._defined: set[str] = set()

    def record(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        self._defined.add(name)
        required = set(schema.get("required", []))
        record: dict[str, Any] = {"type": "record", "name": name, "namespace": NAMESPACE}
        if schema.get("description"):
            record["doc"] = schema["description"]
        record["fields"] = [
            self._field(field, spec, field in required)
            for field, spec in schema.get("properties", {}).items()
        ]
        return record

    def _field(self, name: str, spec: dict[str, Any], required: bool) -> dict[str, Any]:
        if not AVRO_NAME.fullmatch(name):
            raise Unsupported(f"field {name!r} is not a valid Avro name")
        avro = self.type_of(spec)
        field: dict[str, Any] = {"name": name}
        if spec.get("description"):
            field["doc"] = spec["description"]
        if required:
            return {**field, "type": avro}
        default = spec["default"] if "default" in spec else _empty(avro, name)
        # Avro takes a union's default in its first branch.
        if isinstance(avro, list):
            avro = sorted(avro, key=lambda branch: branch != "null") if default is None else avro
        return {**field, "type": avro, "default": default}

    def type_of(self, spec: dict[str, Any]) -> Any:
        if "$ref" in spec:
            return self._named(spec["$ref"])
        if "anyOf" in spec:
            branches = [self.type_of(s) for s in spec["anyOf"]]
            return [b for b in branches if b != "null"] + ["null"] * ("null" in branches)
        kind = spec.get("type")
        if kind == "null":
            return "null"
        if kind == "array":
            return {"type": "array", "items": self.type_of(spec["items"])}
        if kind == "object" and isinstance(spec.get("additionalProperties"), dict):
            return {"type": "map", "values": self.type_of(spec["additionalProperties"])}
        if kind in PRIMITIVES:
            return PRIMITIVES[kind]
        raise Unsupported(f"no Avro type for {spec}")

    def _named(self, name: str) -> Any:
        if name in self._defined:
            return name
        spec = self._defs[name]
        if "enum" not in spec:
            return self.record(name, spec)
        self._defined.add(name)
        symbols = [str(s) for s in spec["enum"]]
        if not all(AVRO_NAME.fullmatch(s) for s in symbols):
            return "string"  # values Avro cannot name: a string on the wire all the same
        return {"type": "enum", "name": name, "namespace": NAMESPACE, "symbols": symbols}


def _empty(avro: Any, field: str) -> Any:
    """The default of an optional field built by a default factory (an empty collection)."""
    if isinstance(avro, dict) and avro.get("type") == "array":
        return []
    if isinstance(avro, dict) and avro.get("type") == "map":
        return {}
    raise Unsupported(f"optional field {field!r} has no default Avro can hold")


def render(schemas: SchemaMap) -> str:
    return json.dumps(schemas, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else Path(__file__).parent.parent / SCHEMAS_FILE
    out.write_text(render(message_schemas()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
