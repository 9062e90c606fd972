"""Message models as Avro records (what Pulsar's registry stores), and the generated file."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path

import pytest
from pydantic import Field

from streamvane_worker import schemas
from streamvane_worker.config import MESSAGES_BY_STAGE, StageType
from streamvane_worker.stages.avro import Unsupported, avro_schema, message_schemas, render
from streamvane_worker.stages.message import Message, Wire


class Colour(StrEnum):
    RED = "red"
    DARK_BLUE = "dark blue"


class Mood(StrEnum):
    HAPPY = "happy"
    SAD = "sad"


class Part(Wire):
    part_id: str
    weight: float = Field(..., description="How much it counts.")


class Thing(Message):
    """A thing."""

    thing_id: str
    count: int
    ok: bool = True
    note: str | None = None
    seen_at: datetime
    scores: dict[str, float] = Field(default_factory=dict)
    main: Part
    spares: list[Part] = Field(default_factory=list)
    mood: Mood
    colour: Colour | None = None


def fields() -> dict[str, dict[str, object]]:
    return {f["name"]: f for f in avro_schema(Thing)["fields"]}


def test_avro_schema_names_fields_as_the_wire_does_when_the_model_uses_aliases() -> None:
    record = avro_schema(Thing)
    assert (record["type"], record["name"], record["doc"]) == ("record", "Thing", "A thing.")
    assert list(fields())[:3] == ["thingId", "count", "ok"]


def test_avro_schema_maps_json_types_to_avro_when_fields_are_primitive() -> None:
    found = fields()
    assert found["thingId"] == {"name": "thingId", "type": "string"}
    assert found["count"]["type"] == "long"
    assert found["ok"] == {"name": "ok", "type": "boolean", "default": True}
    # The wire carries ISO-8601 strings, not Avro's long timestamps.
    assert found["seenAt"]["type"] == "string"
    assert found["scores"] == {
        "name": "scores",
        "type": {"type": "map", "values": "double"},
        "default": {},
    }


def test_avro_schema_makes_a_nullable_union_with_null_default_when_a_field_is_optional() -> None:
    assert fields()["note"] == {"name": "note", "type": ["null", "string"], "default": None}


def test_avro_schema_defines_a_nested_record_once_and_refers_to_it_by_name_after() -> None:
    found = fields()
    main = found["main"]["type"]
    assert isinstance(main, dict) and main["name"] == "Part"
    assert main["fields"][1] == {"name": "weight", "type": "double", "doc": "How much it counts."}
    assert found["spares"]["type"] == {"type": "array", "items": "Part"}
    assert found["spares"]["default"] == []
    assert "default" not in found["main"]


def test_avro_schema_makes_an_enum_when_values_are_avro_names_else_a_string() -> None:
    found = fields()
    assert found["mood"]["type"] == {
        "type": "enum",
        "name": "Mood",
        "namespace": "io.streamvane.messages",
        "symbols": ["happy", "sad"],
    }
    assert found["colour"]["type"] == ["null", "string"]


def test_avro_schema_refuses_when_a_type_has_no_avro_form() -> None:
    class Loose(Message):
        anything: dict[str, object]

    with pytest.raises(Unsupported):
        avro_schema(Loose)


def test_message_schemas_file_matches_the_models_when_generated() -> None:
    """Drift: `make schemas` regenerates it."""
    committed = Path(schemas.__file__).with_name(schemas.SCHEMAS_FILE).read_text()
    assert committed == render(message_schemas()), "run `make schemas`"


def test_message_schemas_cover_what_every_stage_type_reads_and_writes() -> None:
    for stage_type in StageType:
        reads, writes = MESSAGES_BY_STAGE[stage_type]
        assert schemas.input_schema(stage_type)["name"] == reads
        assert schemas.output_schema(stage_type)["name"] == writes
