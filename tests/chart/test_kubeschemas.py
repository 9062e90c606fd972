"""OpenAPI v3 -> kubeconform schema conversion, on a small hand-written OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tools.kubeschemas import group_versions, resource_schemas, schema_location, write_schemas

P = "#/components/schemas/"
DOCUMENT = {
    "components": {
        "schemas": {
            "io.example.v1.Widget": {
                "type": "object",
                "x-kubernetes-group-version-kind": [
                    {"group": "example.io", "version": "v1", "kind": "Widget"}
                ],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "spec": {"allOf": [{"$ref": P + "io.example.v1.WidgetSpec"}]},
                },
            },
            "io.example.v1.WidgetSpec": {
                "type": "object",
                "properties": {
                    "port": {"x-kubernetes-int-or-string": True, "type": "string"},
                    "memory": {"$ref": P + "io.k8s.apimachinery.pkg.api.resource.Quantity"},
                    "note": {"type": "string", "nullable": True},
                    "children": {
                        "type": "array",
                        "items": {"$ref": P + "io.example.v1.WidgetSpec"},
                    },
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            },
            "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
            "io.example.v1.Unused": {"type": "object"},
        }
    }
}


def _widget() -> dict[str, Any]:
    return resource_schemas([DOCUMENT])[("example.io", "v1", "Widget")]


def test_group_versions_lists_core_and_named_groups_when_index_is_served() -> None:
    index: dict[str, Any] = {
        "paths": {"api/v1": {}, "apis/apps/v1": {}, "version": {}, ".well-known/x": {}}
    }
    assert group_versions(index) == ["api/v1", "apis/apps/v1"]


def test_schema_holds_its_reference_closure_when_types_are_recursive() -> None:
    schema = _widget()
    assert schema["$ref"] == "#/definitions/io.example.v1.Widget"
    assert set(schema["definitions"]) == {
        "io.example.v1.Widget",
        "io.example.v1.WidgetSpec",
        "io.k8s.apimachinery.pkg.api.resource.Quantity",
    }
    spec = schema["definitions"]["io.example.v1.WidgetSpec"]
    assert (
        spec["properties"]["children"]["items"]["$ref"] == "#/definitions/io.example.v1.WidgetSpec"
    )


def test_kubernetes_extensions_become_json_schema_when_converted() -> None:
    definitions = _widget()["definitions"]
    spec = definitions["io.example.v1.WidgetSpec"]["properties"]
    assert spec["port"] == {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    assert spec["note"]["type"] == ["string", "null"]
    quantity = definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"]
    assert quantity["oneOf"] == [{"type": "string"}, {"type": "number"}]


def test_strict_schemas_reject_unknown_fields_except_where_preserved() -> None:
    definitions = _widget()["definitions"]
    assert definitions["io.example.v1.WidgetSpec"]["additionalProperties"] is False
    assert (
        "additionalProperties" not in definitions["io.example.v1.WidgetSpec"]["properties"]["free"]
    )
    loose = resource_schemas([DOCUMENT], strict=False)[("example.io", "v1", "Widget")]
    assert "additionalProperties" not in loose["definitions"]["io.example.v1.WidgetSpec"]


def test_schemas_land_where_the_kubeconform_template_looks_when_written(tmp_path: Path) -> None:
    (path,) = write_schemas(resource_schemas([DOCUMENT]), tmp_path)
    assert path == tmp_path / "example.io" / "widget_v1.json"
    assert json.loads(path.read_text())["$ref"].endswith("Widget")
    location = schema_location(tmp_path)
    assert (
        location
        == f"{tmp_path}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json"
    )
