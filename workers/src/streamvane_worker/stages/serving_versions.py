"""Following a model's versions: the online trainer's ``ModelVersion`` announcements, read
from the start and then as they come, tell a model client (``inference.ranker.Ranker``) which
version to ask Triton for. The ranking stage follows its ranker's, a tagging stage its head's.
"""

from __future__ import annotations

import structlog
from pydantic import ValidationError

from streamvane_worker.inference.ranker import Ranker
from streamvane_worker.io.base import Reader, Record
from streamvane_worker.stages.base import Topics
from streamvane_worker.stages.following import FollowedTopic, Following
from streamvane_worker.stages.model_version import ModelVersion

log = structlog.get_logger(__name__)


def serving_version(record: Record, model: str) -> int | None:
    """The version Triton serves after this announcement, if it is one about ``model``; None
    for other models, tombstones and payloads that do not parse (pure)."""
    if not record.payload:
        return None
    try:
        announced = ModelVersion.model_validate_json(record.payload)
    except ValidationError:
        return None
    return announced.serving_version if announced.model == model else None


class ServingVersions(FollowedTopic):
    """The model-versions topic, followed: each announcement about the model tells
    its client which version to ask Triton for (``Ranker.announce``)."""

    def __init__(self, reader: Reader, ranker: Ranker) -> None:
        super().__init__(reader)
        self._ranker = ranker
        self.skipped = 0
        """Other models' announcements, tombstones and payloads that do not parse."""

    def apply(self, record: Record) -> None:
        version = serving_version(record, self._ranker.backend.model)
        if version is None:
            self.skipped += 1
        else:
            self._ranker.announce(version)


async def follow_versions(topics: Topics, topic: str, model: Ranker) -> Following:
    """Catch up with ``topic``'s announcements about ``model``, then keep following them;
    the returned follower is to be closed with the stage."""
    announced = ServingVersions(await topics.reader(topic, None), model)
    read = await announced.catch_up()
    log.info(
        "model_versions_read",
        records_read=read,
        skipped=announced.skipped,
        version=model.choice.announced,
        model=model.backend.model,
    )
    return Following(announced)
