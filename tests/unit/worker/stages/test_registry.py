from __future__ import annotations

from streamvane_worker.config import MESSAGES_BY_STAGE, SIDE_INPUTS_BY_STAGE, StageType
from streamvane_worker.stages import REGISTRY


def test_registry_models_match_the_declared_message_names_when_every_type_is_registered() -> None:
    assert set(REGISTRY) == set(StageType) == set(MESSAGES_BY_STAGE)
    for stage_type, kind in REGISTRY.items():
        assert (kind.input.__name__, kind.output.__name__) == MESSAGES_BY_STAGE[stage_type]
        sides = {param: model.__name__ for param, model in kind.side_inputs.items()}
        assert sides == SIDE_INPUTS_BY_STAGE.get(stage_type, {})
