"""The content item: the JSON document that flows through a content-understanding pipeline.

Producers publish an item with at least ``id`` and some text; each stage validates it, adds its
own field (``embedding``, ``tags``, ``safety``) and appends a ``stages`` record, and publishes the
enriched item. Unknown top-level fields are kept, so producers can carry their own metadata
through the pipeline. The schema is documented in workers/README.md.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from streamvane_worker.inference.backend import EMBEDDING_DIM
from streamvane_worker.stages.message import Message
from streamvane_worker.stages.message import Wire as _Wire


class Embedding(_Wire):
    vector: list[float] = Field(..., min_length=EMBEDDING_DIM, max_length=EMBEDDING_DIM)
    model: str
    model_version: str


class Tag(_Wire):
    name: str
    score: float


class Decision(StrEnum):
    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"


class SafetyVerdict(_Wire):
    decision: Decision
    scores: dict[str, float] = Field(description="Cosine similarity per policy category.")
    flagged: list[str] = Field(description="Categories at or above their review threshold.")


class StageRecord(_Wire):
    """Provenance of one stage's work on the item: who, which model, how long."""

    stage: str
    stage_type: str
    model: str | None = None
    model_version: str | None = None
    inference_ms: float | None = Field(None, description="Model time of the item's micro-batch.")
    batch_ms: float = Field(..., description="Stage time of the item's micro-batch.")
    batch_size: int
    processed_at: datetime


class ContentItem(Message):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="allow"
    )

    id: str = Field(..., min_length=1, max_length=512, description="Stable item id.")
    title: str = ""
    description: str = ""
    transcript: str = ""
    language: str | None = Field(None, description="BCP 47 tag, e.g. 'en'.")
    creator: str | None = Field(None, description="Id of the item's author/channel.")
    created_at: datetime | None = None
    published_at: datetime | None = None
    embedding: Embedding | None = None
    tags: list[Tag] | None = None
    safety: SafetyVerdict | None = None
    stages: list[StageRecord] = Field(default_factory=list)

    def routing_key(self) -> str:
        return self.id

    def text(self) -> str:
        """What the text model reads: title, description and transcript, in that order."""
        return "\n".join(part for part in (self.title, self.description, self.transcript) if part)
