from __future__ import annotations

from typing import Any

import pytest
from models.bert import BertConfig
from models.testing import TINY_HF_CONFIG


def test_from_hf_reads_sizes_when_config_is_bert() -> None:
    config = BertConfig.from_hf(TINY_HF_CONFIG)
    assert (config.hidden_size, config.num_attention_heads, config.head_size) == (16, 4, 4)


@pytest.mark.parametrize(
    "change",
    [
        {"model_type": "roberta"},
        {"hidden_act": "gelu_new"},
        {"position_embedding_type": "relative_key"},
        {"num_attention_heads": 5},
    ],
)
def test_from_hf_refuses_when_model_variant_is_not_modelled(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BertConfig.from_hf(TINY_HF_CONFIG | change)
