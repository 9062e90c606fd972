"""The tokenizer contract shared by the model build and the workers.

``tokenizer.json`` is shipped with truncation at the model's maximum length and padding to the
longest sequence of a batch with ``[PAD]`` (id 0), so ``Tokenizer.encode_batch`` yields
``input_ids`` and ``attention_mask`` rows of equal length, ready for the model.
"""

from __future__ import annotations

from tokenizers import Tokenizer

PAD_ID = 0
PAD_TOKEN = "[PAD]"


def configure_tokenizer(tokenizer_json: str, max_length: int) -> str:
    """Return ``tokenizer_json`` with truncation at ``max_length`` and batch-longest padding."""
    tokenizer = Tokenizer.from_str(tokenizer_json)
    if tokenizer.token_to_id(PAD_TOKEN) != PAD_ID:
        raise ValueError(f"tokenizer maps {PAD_TOKEN} to {tokenizer.token_to_id(PAD_TOKEN)}")
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=PAD_ID, pad_token=PAD_TOKEN)
    return tokenizer.to_str()
