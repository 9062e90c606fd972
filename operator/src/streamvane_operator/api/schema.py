"""pydantic JSON Schema -> Kubernetes structural OpenAPI v3 schema.

pydantic emits JSON Schema 2020-12 (``$ref``/``$defs``, ``anyOf`` with ``null`` for optional
fields, numeric ``exclusiveMinimum``, ``additionalProperties: false``); a CRD needs a
*structural* OpenAPI v3 schema: every node typed, no references, no nullable unions, no
``uniqueItems``. This module converts one into the other and refuses what it cannot express.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

# Keys copied as-is: OpenAPI v3 validation that a structural schema accepts.
_KEPT = frozenset(
    {
        "type",
        "description",
        "default",
        "enum",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "multipleOf",
        "required",
    }
)
_DROPPED = frozenset({"title", "examples", "additionalProperties", "$defs", "uniqueItems"})
_FORMATS = frozenset({"date-time", "date", "int32", "int64", "byte", "duration"})


class SchemaConversionError(ValueError):
    """The JSON Schema uses something a structural schema cannot express."""


def to_structural(schema: Schema) -> Schema:
    """Convert a pydantic ``model_json_schema(by_alias=True)`` result."""
    return _convert(schema, schema.get("$defs", {}), ())


def _convert(node: Schema, defs: Schema, seen: tuple[str, ...]) -> Schema:
    node, seen = _inline(node, defs, seen)
    if "anyOf" in node or "oneOf" in node:
        return _union(node, defs, seen)
    out: Schema = {}
    for key, value in node.items():
        if key in _KEPT or key.startswith("x-kubernetes-"):
            out[key] = value
        elif key == "format":
            if value in _FORMATS:
                out[key] = value
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "properties":
            out[key] = {name: _convert(sub, defs, seen) for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, seen)
        elif key in _DROPPED:
            continue
        else:
            raise SchemaConversionError(f"unsupported JSON Schema keyword {key!r}")
    additional = node.get("additionalProperties")
    if isinstance(additional, dict) and additional:
        out["additionalProperties"] = _convert(additional, defs, seen)
    elif out.get("type") == "object" and "properties" not in out and additional is not False:
        # A free-form object: without this the API server would prune every field of it.
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "default" in out:
        out["default"] = _without_nulls(out["default"])
        if out["default"] is None:
            del out["default"]
    if node.get("uniqueItems"):
        out.setdefault("x-kubernetes-list-type", "set")
    return _typed(out)


def _inline(node: Schema, defs: Schema, seen: tuple[str, ...]) -> tuple[Schema, tuple[str, ...]]:
    """Replace a ``$ref`` (or pydantic's single-``allOf`` wrapper) with its target.

    ``seen`` names the definitions being expanded above this node, to refuse recursion.
    """
    if "allOf" in node:
        parts = node["allOf"]
        if len(parts) != 1:
            raise SchemaConversionError("allOf with several schemas is not supported")
        node = {**{k: v for k, v in node.items() if k != "allOf"}, **parts[0]}
    ref = node.get("$ref")
    if ref is None:
        return node, seen
    name = ref.rsplit("/", 1)[-1]
    if name in seen:
        raise SchemaConversionError(f"recursive schema {name!r} cannot be inlined")
    if name not in defs:
        raise SchemaConversionError(f"unresolved reference {ref!r}")
    target, seen = _inline(defs[name], defs, (*seen, name))
    siblings = {k: v for k, v in node.items() if k != "$ref"}
    merged = {**target, **siblings}
    rules = target.get("x-kubernetes-validations", []) + siblings.get(
        "x-kubernetes-validations", []
    )
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged, seen


def _union(node: Schema, defs: Schema, seen: tuple[str, ...]) -> Schema:
    """Optional fields (``X | None``) become ``X``; ``int | str`` becomes int-or-string."""
    branches = node.get("anyOf") or node.get("oneOf") or []
    outer = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
    typed = [_inline(b, defs, seen) for b in branches if b.get("type") != "null"]
    if len(typed) == 1:
        branch, branch_seen = typed[0]
        return _convert({**branch, **outer}, defs, branch_seen)
    types = sorted(str(b.get("type", "?")) for b, _ in typed)
    if types == ["integer", "string"]:
        string_branch = next(b for b, _ in typed if b.get("type") == "string")
        out = _convert({**string_branch, **outer}, defs, seen)
        del out["type"]
        # The one union a structural schema allows (as in core's IntOrString fields).
        return {
            **out,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
        }
    raise SchemaConversionError(f"union of {types} has no structural equivalent")


def _without_nulls(value: Any) -> Any:
    """Defaults must validate against the schema, which has no nullable fields."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _typed(out: Schema) -> Schema:
    if "type" in out or out.get("x-kubernetes-preserve-unknown-fields"):
        return out
    if "properties" in out:
        return {"type": "object", **out}
    raise SchemaConversionError(f"schema node has no type: {sorted(out)}")
