from __future__ import annotations

import pytest
from models.testing import tiny_tokenizer_json
from models.tokenizer import PAD_ID, configure_tokenizer
from tokenizers import Tokenizer


def test_configure_tokenizer_pads_to_batch_longest_when_batch_has_mixed_lengths() -> None:
    tokenizer = Tokenizer.from_str(configure_tokenizer(tiny_tokenizer_json(), max_length=16))
    short, long = tokenizer.encode_batch(["the cat", "the dog sat on a mat"])
    assert len(short.ids) == len(long.ids) == 8
    assert short.ids[4:] == [PAD_ID] * 4
    assert short.attention_mask == [1, 1, 1, 1, 0, 0, 0, 0]
    assert long.attention_mask == [1] * 8


def test_configure_tokenizer_truncates_when_text_exceeds_max_length() -> None:
    tokenizer = Tokenizer.from_str(configure_tokenizer(tiny_tokenizer_json(), max_length=6))
    encoding = tokenizer.encode(" ".join(["cat"] * 20))
    assert len(encoding.ids) == 6
    assert encoding.tokens[0] == "[CLS]" and encoding.tokens[-1] == "[SEP]"


def test_configure_tokenizer_refuses_when_pad_token_is_not_id_zero() -> None:
    swapped = tiny_tokenizer_json().replace('"[PAD]":0', '"[PAD]":99')
    with pytest.raises(ValueError, match="PAD"):
        configure_tokenizer(swapped, max_length=8)
