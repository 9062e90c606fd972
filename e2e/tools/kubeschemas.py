"""Kubernetes OpenAPI v3 (as a kube-apiserver serves it) -> kubeconform JSON schemas.

kubeconform looks schemas up with a path template; we lay them out as
``<dir>/<group>/<kind>_<version>.json`` (core types under the group ``v1``), which
``SCHEMA_LOCATION`` names. Only what the server serves is used, CRDs included, so nothing
is downloaded. With ``strict`` every object schema that lists its properties rejects unknown
ones, which catches misspelled fields the server would silently drop.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

SCHEMA_LOCATION = (
    "{dir}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json"
)
"""kubeconform -schema-location template for a directory written by ``write_schemas``."""

_REF_PREFIX = "#/components/schemas/"

Schema = dict[str, Any]


def schema_location(directory: Path) -> str:
    return SCHEMA_LOCATION.format(dir=directory)


def group_versions(index: Mapping[str, Any]) -> list[str]:
    """Paths of the per group-version documents listed by ``GET /openapi/v3``."""
    return sorted(
        path
        for path in index.get("paths", {})
        if path == "api/v1" or (path.startswith("apis/") and path.count("/") == 2)
    )


def _kinds(schema: Schema) -> list[tuple[str, str, str]]:
    return [
        (gvk.get("group", ""), gvk["version"], gvk["kind"])
        for gvk in schema.get("x-kubernetes-group-version-kind", [])
    ]


def _subschemas(schema: Schema) -> Iterator[Schema]:
    """The schemas nested in one schema node (not its keywords' other values)."""
    for key in ("properties", "patternProperties", "definitions"):
        yield from schema.get(key, {}).values()
    for key in ("allOf", "anyOf", "oneOf"):
        yield from schema.get(key, [])
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            yield schema[key]


def _walk(schema: Schema, visit: Callable[[Schema], None]) -> None:
    visit(schema)
    for child in _subschemas(schema):
        _walk(child, visit)


def _references(schema: Schema) -> Iterator[str]:
    found: list[str] = []
    _walk(schema, lambda n: found.append(n["$ref"]) if isinstance(n.get("$ref"), str) else None)
    for ref in found:
        if ref.startswith(_REF_PREFIX):
            yield ref.removeprefix(_REF_PREFIX)


def _closure(name: str, components: Mapping[str, Schema]) -> list[str]:
    """``name`` and every schema it references, transitively (recursive types included)."""
    seen: list[str] = []
    pending = [name]
    while pending:
        current = pending.pop()
        if current in seen or current not in components:
            continue
        seen.append(current)
        pending.extend(_references(components[current]))
    return seen


def _to_json_schema(node: Schema, strict: bool) -> None:
    """Rewrite one OpenAPI v3 schema node in place into plain JSON Schema."""
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        node["$ref"] = "#/definitions/" + ref.removeprefix(_REF_PREFIX)
    if node.pop("x-kubernetes-int-or-string", False) or node.get("format") == "int-or-string":
        for key in ("type", "format"):
            node.pop(key, None)
        node["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if node.pop("nullable", False) and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    if (
        strict
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False


def _fix_quantity(definitions: dict[str, Schema]) -> None:
    # Quantities are written both as strings ("500m") and as bare numbers (cpu: 1).
    for name, schema in definitions.items():
        if name.endswith(".api.resource.Quantity"):
            definitions[name] = {
                "description": schema.get("description", ""),
                "oneOf": [{"type": "string"}, {"type": "number"}],
            }


def resource_schemas(
    documents: Iterable[Mapping[str, Any]], strict: bool = True
) -> dict[tuple[str, str, str], Schema]:
    """(group, version, kind) -> standalone JSON Schema for every kind the documents define."""
    components: dict[str, Schema] = {}
    for document in documents:
        components.update(document.get("components", {}).get("schemas", {}))
    result: dict[tuple[str, str, str], Schema] = {}
    for name, schema in components.items():
        for gvk in _kinds(schema):
            definitions = {n: copy.deepcopy(components[n]) for n in _closure(name, components)}
            _fix_quantity(definitions)
            for definition in definitions.values():
                _walk(definition, lambda node: _to_json_schema(node, strict))
            result[gvk] = {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "$ref": f"#/definitions/{name}",
                "definitions": definitions,
            }
    return result


def write_schemas(schemas: Mapping[tuple[str, str, str], Schema], directory: Path) -> list[Path]:
    """Write schemas where ``schema_location(directory)`` finds them; returns the files."""
    written = []
    for (group, version, kind), schema in sorted(schemas.items()):
        path = directory / (group or "v1") / f"{kind.lower()}_{version}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, sort_keys=True))
        written.append(path)
    return written
