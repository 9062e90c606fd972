"""The Pulsar Function baseline of bench_workers: the text-embedding stage's work written as a
Python Pulsar Function, as a team would without Streamvane. The functions worker calls
``process`` once per message: parse the item, tokenize it, one Triton call, return the item
with its embedding (the framework publishes it and acks the input).

Deployed by ``bench_workers.pulsar_function`` through the admin REST API with ``userConfig``
``tritonUrl``, ``model`` and ``tokenizer`` (the tokenizer.json path); it runs in the
project's environment (the stack puts its python3 first on the functions worker's PATH).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pulsar import Function
from tritonclient import grpc

from streamvane_worker.inference.tokenizer import TextTokenizer
from streamvane_worker.stages.item import ContentItem


class Embed(Function):  # type: ignore[misc]
    def __init__(self) -> None:
        self._setup: tuple[TextTokenizer, grpc.InferenceServerClient, str] | None = None

    def process(self, input: bytes, context: Any) -> bytes:
        if self._setup is None:
            config = context.get_user_config_map()
            self._setup = (
                TextTokenizer(Path(config["tokenizer"])),
                grpc.InferenceServerClient(config["tritonUrl"]),
                config["model"],
            )
        tokenizer, triton, model = self._setup
        item = ContentItem.model_validate_json(input)
        encoded = tokenizer.encode([item.text()])
        inputs = []
        for name, array in (
            ("input_ids", encoded.input_ids),
            ("attention_mask", encoded.attention_mask),
        ):
            tensor = grpc.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        vector = triton.infer(model, inputs).as_numpy("embedding")[0]
        out = item.model_dump(by_alias=True, exclude_none=True) | {
            "embedding": {"vector": vector.tolist(), "model": model, "modelVersion": "1"}
        }
        return json.dumps(out).encode()
