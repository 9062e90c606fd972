"""Triton gRPC backend (``tritonclient.grpc.aio``).

``TritonBackend`` is the one Triton client of the worker: ``describe`` reads a model's metadata
and config, ``infer`` makes one call with named tensors. Each model's interface is checked
against what the worker sends before it runs (the embedding model here: INT64 inputs, an FP32
[batch, 384] output, a batching model; the ranker in ``inference.ranker``); ``start`` and
``embed`` are the embedding model's. ``infer`` classifies a failure; the runtime retries
infrastructure failures in place (never against a message's redelivery budget):

- UNAVAILABLE, and a model that was served at start but is not now (Triton unloads its models
  before it closes its port on a graceful shutdown): ``BackendUnavailable``; a version asked
  for by number (``infer_at``) that is not loaded: ``VersionNotServed``, a kind of it, which
  the ranker answers by asking for another version;
- a passed deadline or a full queue: ``BackendOverloaded``. Each request carries its deadline
  as Triton's request ``timeout`` too, so a request still queued when the client gives up is
  rejected by Triton's queue policy instead of computed for nobody (``models/``).

The gRPC channel reconnects quickly after an outage: its reconnect backoff is capped at
``RECONNECT_MAX_BACKOFF_MS`` instead of gRPC's default two minutes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
from tritonclient.grpc import aio as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from streamvane_worker.inference.backend import (
    ATTENTION_MASK,
    EMBEDDING,
    EMBEDDING_DIM,
    INPUT_IDS,
    EmbeddingArray,
    ModelInfo,
    TokenArray,
    served_model_info,
)
from streamvane_worker.inference.errors import (
    BackendUnavailable,
    InferenceError,
    InferenceFailed,
    ModelNotFound,
    VersionNotServed,
    from_triton,
)

log = structlog.get_logger(__name__)

PROBE_TIMEOUT_S = 2.0
LOAD_TIMEOUT_S = 120.0
"""Loading a version reads and initialises its model (a python backend starts a process)."""
RECONNECT_MAX_BACKOFF_MS = 1000
CHANNEL_ARGS = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", RECONNECT_MAX_BACKOFF_MS),
    ("grpc.enable_retries", 0),
]


def check_model(metadata: dict[str, Any], config: dict[str, Any], model: str) -> ModelInfo:
    """Compare Triton's view of the model with the worker's expectations (pure)."""
    problems: list[str] = []
    inputs = {t["name"]: t for t in metadata.get("inputs", [])}
    outputs = {t["name"]: t for t in metadata.get("outputs", [])}
    for name in (INPUT_IDS, ATTENTION_MASK):
        tensor = inputs.get(name)
        if tensor is None:
            problems.append(f"missing input {name!r} (has {sorted(inputs)})")
        elif tensor.get("datatype") != "INT64":
            problems.append(f"input {name!r} is {tensor.get('datatype')}, expected INT64")
    out = outputs.get(EMBEDDING)
    if out is None:
        problems.append(f"missing output {EMBEDDING!r} (has {sorted(outputs)})")
    else:
        if out.get("datatype") != "FP32":
            problems.append(f"output {EMBEDDING!r} is {out.get('datatype')}, expected FP32")
        dims = [int(d) for d in out.get("shape", [])]
        if not dims or dims[-1] != EMBEDDING_DIM:
            problems.append(
                f"output {EMBEDDING!r} has shape {dims}, expected [-1, {EMBEDDING_DIM}]"
            )
    return served_model_info(model, metadata, config, problems, "does not match the worker")


@dataclass(frozen=True)
class TritonTls:
    """gRPC over TLS; ``ca_file`` is the PEM bundle to trust (None: the system roots)."""

    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if self.ca_file is not None and not self.ca_file.is_file():
            raise InferenceError(f"Triton CA bundle {self.ca_file} is not a file")


class TritonBackend:
    """Triton Inference Server over gRPC (TLS when ``tls``), for one model; an
    ``EmbeddingBackend`` for the embedding model."""

    def __init__(
        self,
        url: str,
        model: str,
        version: str = "",
        timeout_s: float = 10.0,
        tls: TritonTls | None = None,
    ) -> None:
        self._url = url
        self._tls = tls
        self._model = model
        self._version = version
        self._timeout_s = timeout_s
        self._client_: grpcclient.InferenceServerClient | None = None

    @property
    def _client(self) -> grpcclient.InferenceServerClient:
        # Created on first use: a gRPC aio channel belongs to the event loop it was made on.
        if self._client_ is None:
            self._client_ = grpcclient.InferenceServerClient(
                url=self._url,
                ssl=self._tls is not None,
                root_certificates=str(self._tls.ca_file)
                if self._tls and self._tls.ca_file
                else None,
                channel_args=CHANNEL_ARGS,
            )
        return self._client_

    @property
    def model(self) -> str:
        return self._model

    async def describe(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The model's metadata and config as Triton serves them; raises a named
        InferenceError (BackendUnavailable while Triton is not live)."""
        try:
            live = await self._client.is_server_live(client_timeout=self._timeout_s)
            metadata = await self._client.get_model_metadata(
                self._model, self._version, as_json=True, client_timeout=self._timeout_s
            )
            config = await self._client.get_model_config(
                self._model, self._version, as_json=True, client_timeout=self._timeout_s
            )
        except InferenceServerException as e:
            raise from_triton(e, url=self._url, model=self._model) from e
        if not live:
            raise BackendUnavailable(f"Triton at {self._url} is not live")
        return metadata, config.get("config", config)

    async def start(self) -> ModelInfo:
        metadata, config = await self.describe()
        return check_model(metadata, config, self._model)

    async def infer(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str]
    ) -> dict[str, npt.NDArray[Any]]:
        """One call: named input tensors in, the named outputs back."""
        found, _ = await self.infer_at(inputs, outputs, None)
        return found

    async def infer_at(
        self,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Sequence[str],
        version: int | None,
    ) -> tuple[dict[str, npt.NDArray[Any]], str]:
        """One call to ``version`` of the model (None: the configured version, else Triton's
        policy); the named outputs and the version Triton says computed them. Raises
        VersionNotServed when the ``version`` asked for is not loaded."""
        tensors = []
        for name, array in inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        try:
            result = await self._client.infer(
                self._model,
                tensors,
                model_version=self._version if version is None else str(version),
                outputs=[grpcclient.InferRequestedOutput(name) for name in outputs],
                timeout=int(self._timeout_s * 1_000_000),
                client_timeout=self._timeout_s,
            )
        except InferenceServerException as e:
            error = from_triton(e, url=self._url, model=self._model)
            if isinstance(error, ModelNotFound):
                if version is not None:
                    raise VersionNotServed(f"version {version} not served: {error}") from e
                # Served at start, so not a deployment error: Triton is unloading or loading it.
                raise BackendUnavailable(f"model not served now: {error}") from e
            raise error from e
        found = {}
        for name in outputs:
            output = result.as_numpy(name)
            if output is None:
                raise InferenceFailed(f"Triton returned no {name!r} output")
            found[name] = output
        return found, str(result.get_response().model_version)

    async def load(self, config: Mapping[str, Any]) -> None:
        """Load (or reload) the model with ``config`` through the repository API (Triton's
        explicit model control): the versions its ``version_policy`` names are read from the
        repository; until the new ones are ready the loaded ones go on serving."""
        try:
            await self._client.load_model(
                self._model, config=json.dumps(config), client_timeout=LOAD_TIMEOUT_S
            )
        except InferenceServerException as e:
            raise from_triton(e, url=self._url, model=self._model) from e

    async def embed(self, input_ids: TokenArray, attention_mask: TokenArray) -> EmbeddingArray:
        found = await self.infer(
            {INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask}, [EMBEDDING]
        )
        return np.asarray(found[EMBEDDING], dtype=np.float32)

    async def ready(self) -> bool:
        try:
            return bool(
                await self._client.is_model_ready(
                    self._model, self._version, client_timeout=PROBE_TIMEOUT_S
                )
            )
        except InferenceServerException:
            return False

    async def close(self) -> None:
        if self._client_ is not None:
            await self._client_.close()
