"""Messages of a recommendation pipeline: engagements in, user profiles, candidates and
recommendations out.

    engagements --user-profile--> UserProfile --candidate-retrieval--> Candidates
                --ranking--> Recommendations

Every message is keyed by its user id (``routing_key``), so Key_Shared subscriptions keep one
user's messages in order on one replica. The schemas are documented in workers/README.md.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from streamvane_worker.inference.backend import EMBEDDING_DIM
from streamvane_worker.stages.message import Message, Wire
from streamvane_worker.stages.vector import Float32, Vector

ID_MAX = 512
EmbeddingVector = Annotated[Vector, Float32(EMBEDDING_DIM)]
"""A vector in the item embedding space: base64 float32 on the wire (``stages.vector``)."""


class EventType(StrEnum):
    IMPRESSION = "impression"
    VIEW = "view"
    LIKE = "like"
    SHARE = "share"
    SKIP = "skip"


class Engagement(Message):
    """One thing a user did with an item; publish it keyed by ``userId``."""

    user_id: str = Field(..., min_length=1, max_length=ID_MAX)
    item_id: str = Field(..., min_length=1, max_length=ID_MAX)
    event_type: EventType
    dwell_ms: int = Field(0, ge=0, description="Time spent on the item.")
    request_id: str | None = Field(
        None, max_length=ID_MAX, description="The recommendation request the item was shown in."
    )
    event_time: datetime = Field(..., description="When it happened (decay runs on event time).")

    def routing_key(self) -> str:
        return self.user_id

    def identity(self) -> str:
        """What makes two deliveries the same engagement (redeliveries are applied once)."""
        return "|".join(
            (self.item_id, self.event_type, self.event_time.isoformat(), self.request_id or "")
        )


class UserProfile(Message):
    """A user's interests after an engagement: the decayed, weighted sum of the embeddings of
    the items engaged with, L2-normalised, plus the recently engaged item ids."""

    user_id: str = Field(..., min_length=1, max_length=ID_MAX)
    vector: EmbeddingVector = Field(
        ...,
        description="Unit interest vector in the item embedding space (zero when no interest).",
    )
    strength: float = Field(
        ..., description="Norm of the decayed weighted sum at updatedAt: how much evidence."
    )
    recent_items: list[str] = Field(
        default_factory=list, description="Recently engaged item ids, most recent first."
    )
    event_count: int = Field(..., ge=0, description="Engagements applied to this profile.")
    version: int = Field(..., ge=0, description="Grows by one with every applied engagement.")
    updated_at: datetime = Field(..., description="Event time the profile is decayed to.")

    def routing_key(self) -> str:
        return self.user_id


REQUEST_IDS = uuid.UUID("6f1c2a3e-5d0b-4c8e-9a51-2f7d3b9e0c14")
"""Namespace of the request ids of served recommendations (uuid5)."""


def request_id(profile: UserProfile) -> str:
    """The id of the recommendations served for ``profile``: the same for a redelivered
    profile, another for every new version (and for a user whose state started again)."""
    key = f"{profile.user_id}\n{profile.version}\n{profile.updated_at.isoformat()}"
    return str(uuid.uuid5(REQUEST_IDS, key))


class Candidate(Wire):
    item_id: str
    score: float = Field(..., description="Cosine similarity of the item to the profile.")


class Candidates(Message):
    """Top-K catalogue items for a profile, best first, without blocked or seen items."""

    user_id: str = Field(..., min_length=1, max_length=ID_MAX)
    profile: UserProfile = Field(..., description="The profile the candidates were retrieved for.")
    items: list[Candidate]
    index_size: int = Field(..., ge=0, description="Retrievable items in the index.")
    retrieved_at: datetime

    def routing_key(self) -> str:
        return self.user_id


class RankingFeatures(Wire):
    """The exact values the ranking model was given for one item (the user's vector is on the
    message, once): logged at serving time, so training uses what serving used."""

    item: EmbeddingVector = Field(
        ...,
        description="The item's unit embedding from the catalogue, as the model's ``item`` row.",
    )
    dense: dict[str, float] = Field(
        ..., description="The model's ``dense`` row by feature name (models/ranker.py)."
    )


class RankedItem(Wire):
    item_id: str
    score: float = Field(..., description="The ranking model's score (engagement probability).")
    retrieval_score: float = Field(..., description="The candidate's retrieval score.")
    features: RankingFeatures


class ModelRef(Wire):
    name: str
    version: str


class Recommendations(Message):
    """A user's candidates ranked by the ranking model, best first, without items deleted from
    or blocked in the catalogue since retrieval."""

    user_id: str = Field(..., min_length=1, max_length=ID_MAX)
    items: list[RankedItem]
    model: ModelRef = Field(..., description="The ranking model that scored the items.")
    user_features: EmbeddingVector = Field(
        ...,
        description="The model's ``user`` row: the profile vector, as the model saw it.",
    )
    profile_version: int = Field(..., ge=0, description="Version of the profile ranked for.")
    request_id: str | None = Field(
        None,
        description="Id of this served list (``request_id``); engagements answering it carry it.",
    )
    candidates_scored: int = Field(..., ge=0, description="Candidates the model scored.")
    ranked_at: datetime

    def routing_key(self) -> str:
        return self.user_id
