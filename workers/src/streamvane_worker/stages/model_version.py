"""Model-version announcements: the online-training stage's output, which the ranking stage
follows and the operator reports in the Pipeline's status.

    examples --online-training--> ModelVersion (topic model-versions) --> ranking, operator

Each exported version is announced once, promoted or kept out, and every announcement says
which version Triton serves after it (``serving_version``), so the newest message alone tells
a reader what to request. Keyed by the model's name (a compacted topic keeps the newest).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from streamvane_worker.stages.message import Message


class ModelVersion(Message):
    model: str = Field(..., min_length=1, max_length=128, description="Model name in Triton.")
    version: int = Field(..., ge=1, description="The version this announcement is about.")
    promoted: bool = Field(..., description="Whether Triton now serves this version.")
    serving_version: int = Field(
        ..., ge=1, description="The version Triton serves after this announcement."
    )
    reason: str = Field(
        ..., max_length=2048, description="Why it was promoted, kept out, pinned or rolled back."
    )
    auc: float | None = Field(
        None, description="Progressive AUC of this version on the evaluation window."
    )
    serving_auc: float | None = Field(
        None, description="Progressive AUC of the version served before, on the same window."
    )
    window: int = Field(0, ge=0, description="Examples in the evaluation window.")
    examples_learned: int = Field(0, ge=0, description="Examples this version learned from.")
    newest_example_time: datetime | None = Field(
        None, description="Event time of the newest example this version learned from."
    )
    announced_at: datetime

    def routing_key(self) -> str:
        return self.model
