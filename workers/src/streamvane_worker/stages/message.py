"""The base of every message model a stage reads or writes (JSON on the wire, camelCase)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class Message(Wire):
    """A top-level message: its ``routing_key`` is the Pulsar key it is published under (what
    Key_Shared subscriptions and compaction group by) unless the input message carried one."""

    def routing_key(self) -> str:
        raise NotImplementedError
