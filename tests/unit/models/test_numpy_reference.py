from __future__ import annotations

import numpy as np
import numpy.typing as npt
from models.bert import BertConfig
from models.reference import encode


def test_encode_ignores_padding_when_row_is_padded(
    tiny_config: BertConfig, tiny_weights: dict[str, npt.NDArray[np.float32]]
) -> None:
    short = encode(tiny_config, tiny_weights, np.array([[2, 7, 3]]), np.array([[1, 1, 1]]))
    padded = encode(
        tiny_config, tiny_weights, np.array([[2, 7, 3, 0, 0]]), np.array([[1, 1, 1, 0, 0]])
    )
    np.testing.assert_allclose(short, padded, atol=1e-12)


def test_encode_depends_on_word_order_when_positions_differ(
    tiny_config: BertConfig, tiny_weights: dict[str, npt.NDArray[np.float32]]
) -> None:
    mask = np.ones((1, 4), dtype=np.int64)
    forward = encode(tiny_config, tiny_weights, np.array([[2, 7, 8, 3]]), mask)
    swapped = encode(tiny_config, tiny_weights, np.array([[2, 8, 7, 3]]), mask)
    assert np.abs(forward - swapped).max() > 1e-3
