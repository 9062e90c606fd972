"""The pydantic -> structural schema converter."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from streamvane_operator.api.common import Model, Quantity
from streamvane_operator.api.crd import KINDS, schema_of
from streamvane_operator.api.schema import SchemaConversionError, to_structural


class Inner(Model):
    size: int = Field(3, gt=0, le=10)


class Outer(Model):
    name: str = Field(..., pattern=r"^[a-z]+$")
    inner: Inner = Inner()
    maybe: Inner | None = None
    quantity: Quantity = "1Gi"
    tags: list[str] = Field(
        default_factory=list, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    free: dict[str, Any] = Field(default_factory=dict)


def walk(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node, *[n for v in node.values() for n in walk(v)]]
    if isinstance(node, list):
        return [n for v in node for n in walk(v)]
    return []


def test_to_structural_inlines_refs_when_models_nest() -> None:
    schema = to_structural(Outer.model_json_schema(by_alias=True))

    inner = schema["properties"]["inner"]
    assert inner["type"] == "object"
    assert inner["properties"]["size"]["type"] == "integer"
    assert not any("$ref" in n or "$defs" in n for n in walk(schema))


def test_to_structural_drops_null_branch_when_field_is_optional() -> None:
    maybe = to_structural(Outer.model_json_schema(by_alias=True))["properties"]["maybe"]

    assert maybe["type"] == "object"
    assert "anyOf" not in maybe
    assert "default" not in maybe


def test_to_structural_marks_int_or_string_when_field_is_a_quantity() -> None:
    quantity = to_structural(Outer.model_json_schema(by_alias=True))["properties"]["quantity"]

    assert quantity["x-kubernetes-int-or-string"] is True
    assert quantity["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert "pattern" in quantity
    assert "type" not in quantity


def test_to_structural_uses_openapi_exclusive_bounds_when_pydantic_emits_numbers() -> None:
    size = to_structural(Inner.model_json_schema(by_alias=True))["properties"]["size"]

    assert size["minimum"] == 0
    assert size["exclusiveMinimum"] is True
    assert size["maximum"] == 10


def test_to_structural_preserves_unknown_fields_when_dict_is_untyped() -> None:
    free = to_structural(Outer.model_json_schema(by_alias=True))["properties"]["free"]

    assert free == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_to_structural_drops_additional_properties_false_when_model_forbids_extra() -> None:
    schema = to_structural(Outer.model_json_schema(by_alias=True))

    assert all(n.get("additionalProperties") is not False for n in walk(schema))
    assert not any("title" in n and isinstance(n["title"], str) for n in walk(schema))


def test_to_structural_removes_null_from_defaults_when_nested_default_has_none() -> None:
    schema = to_structural(
        {"type": "object", "properties": {"a": {"type": "object", "default": {"x": None, "y": 1}}}}
    )

    assert schema["properties"]["a"]["default"] == {"y": 1}


def test_to_structural_refuses_union_when_it_has_no_structural_form() -> None:
    class Bad(BaseModel):
        value: int | list[int]

    with pytest.raises(SchemaConversionError, match="union"):
        to_structural(Bad.model_json_schema())


def test_to_structural_refuses_recursion_when_model_refers_to_itself() -> None:
    class Node(BaseModel):
        children: list[Node] = []

    with pytest.raises(SchemaConversionError, match="recursive"):
        to_structural(Node.model_json_schema())


def test_to_structural_refuses_unknown_keywords_when_schema_uses_them() -> None:
    with pytest.raises(SchemaConversionError, match="patternProperties"):
        to_structural({"type": "object", "patternProperties": {"^a": {"type": "string"}}})


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schema_of_is_structural_when_built_from_api_models(kind: Any) -> None:
    for model in (kind.spec, kind.status):
        schema = schema_of(model)
        for node in walk(schema):
            if "properties" in node or "items" in node:
                assert node.get("type") in ("object", "array"), node
            assert "uniqueItems" not in node
            assert "nullable" not in node
