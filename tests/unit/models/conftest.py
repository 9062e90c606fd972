from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from models.bert import BertConfig
from models.testing import TINY_HF_CONFIG, random_weights


@pytest.fixture(scope="session")
def tiny_config() -> BertConfig:
    return BertConfig.from_hf(TINY_HF_CONFIG)


@pytest.fixture(scope="session")
def tiny_weights(tiny_config: BertConfig) -> dict[str, npt.NDArray[np.float32]]:
    return random_weights(tiny_config)
