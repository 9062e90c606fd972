"""The Avro record of every message a stage type reads or writes, for the operator to register
in Pulsar's schema registry. Generated from the message models (``make schemas``, see
``stages/avro.py``) into a file, so that reading it needs no stage module."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from streamvane_worker.config import MESSAGES_BY_STAGE, StageType

SCHEMAS_FILE = "message_schemas.json"
SchemaMap = dict[str, dict[str, Any]]


@cache
def message_schemas() -> SchemaMap:
    """Message model name -> its Avro record (read once, on first use)."""
    data: SchemaMap = json.loads(files("streamvane_worker").joinpath(SCHEMAS_FILE).read_text())
    return data


def input_schema(stage_type: StageType) -> dict[str, Any]:
    return message_schemas()[MESSAGES_BY_STAGE[stage_type][0]]


def output_schema(stage_type: StageType) -> dict[str, Any]:
    return message_schemas()[MESSAGES_BY_STAGE[stage_type][1]]
