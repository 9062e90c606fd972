"""Wiring: WorkerConfig -> backend, stage, Pulsar source/sinks, probes; run until SIGTERM.

Startup retries unreachable Pulsar / Triton for ``startupTimeoutS`` (reporting not-ready and
logging which one is missing), then exits non-zero with a message naming the problem. A wrong
model name or mismatching tensors fail at once: retrying cannot fix a deployment error.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from streamvane_worker.config import (
    EMBEDDING_STAGES,
    STAGES_NEEDING_MODEL,
    DeliveryGuarantee,
    InferenceSettings,
    WorkerConfig,
)
from streamvane_worker.inference import paths
from streamvane_worker.inference.backend import EmbeddingBackend
from streamvane_worker.inference.embedder import Embedder
from streamvane_worker.inference.errors import BackendUnavailable, InferenceError
from streamvane_worker.inference.onnx import OnnxBackend
from streamvane_worker.inference.ranker import Ranker
from streamvane_worker.inference.tokenizer import TextTokenizer
from streamvane_worker.inference.triton import TritonBackend, TritonTls
from streamvane_worker.io.errors import PulsarError, PulsarUnavailable
from streamvane_worker.io.pulsar import PulsarAttemptLog, PulsarSink, PulsarSource, connect
from streamvane_worker.io.pulsar_reader import PulsarReader
from streamvane_worker.runtime.health import HealthServer
from streamvane_worker.runtime.metrics import create_metrics
from streamvane_worker.runtime.worker import Worker
from streamvane_worker.stages import StageContext, create_stage
from streamvane_worker.stages.base import Closable, Topics

log = structlog.get_logger(__name__)

T = TypeVar("T")


class StartupError(Exception):
    """The worker cannot start; the message names what is missing or wrong."""


def build_backend(settings: InferenceSettings) -> EmbeddingBackend:
    if settings.backend == "onnxruntime":
        assert settings.onnx_path is not None  # guaranteed by InferenceSettings' validator
        return OnnxBackend(settings.onnx_path, settings.model_name)
    return _triton(settings)


def _triton(settings: InferenceSettings) -> TritonBackend:
    return TritonBackend(
        settings.triton_url,
        settings.model_name,
        settings.model_version,
        timeout_s=settings.timeout_ms / 1000,
        tls=TritonTls(settings.tls_ca_file) if settings.tls else None,
    )


def build_embedder(settings: InferenceSettings, observe: Callable[[float], None]) -> Embedder:
    # No tokenizerPath: the default model's tokenizer, which the worker image ships in the cache.
    tokenizer = TextTokenizer(settings.tokenizer_path or paths.tokenizer_path())
    return Embedder(
        tokenizer, build_backend(settings), observe=observe, buckets=settings.sequence_buckets
    )


def build_model(config: WorkerConfig, observe: Callable[[float], None]) -> Embedder | Ranker:
    """The stage's model: the text embedder, or the ranker (on Triton: WorkerConfig checks)."""
    assert config.inference is not None  # guaranteed by WorkerConfig's validator
    if config.stage_type in EMBEDDING_STAGES:
        return build_embedder(config.inference, observe)
    return Ranker(_triton(config.inference), observe)


def other_models(
    settings: InferenceSettings | None, observe: Callable[[float], None]
) -> Callable[[str], Ranker] | None:
    """Clients of other models on the stage's Triton (its URL, TLS and deadline), by name."""
    if settings is None or settings.backend != "triton":
        return None
    return lambda name: Ranker(
        _triton(settings.model_copy(update={"model_name": name, "model_version": ""})), observe
    )


async def _retrying(what: str, timeout_s: float, attempt: Callable[[], Awaitable[T]]) -> T:
    """Retry an unreachable dependency until ``timeout_s``; then raise StartupError."""
    try:
        async for state in AsyncRetrying(
            retry=retry_if_exception_type((BackendUnavailable, PulsarUnavailable)),
            wait=wait_exponential(multiplier=0.5, max=5.0),
            stop=stop_after_delay(timeout_s),
            before_sleep=lambda rs: log.warning(
                "waiting_for_dependency",
                dependency=what,
                error=str(rs.outcome.exception() if rs.outcome else None),
            ),
            reraise=True,
        ):
            with state:
                return await attempt()
    except (BackendUnavailable, PulsarUnavailable) as e:
        raise StartupError(f"{what} unreachable after {timeout_s:.0f}s: {e}") from e
    except (InferenceError, PulsarError) as e:
        raise StartupError(f"{what}: {e}") from e
    raise AssertionError("unreachable: tenacity reraises")


async def serve(config: WorkerConfig) -> None:
    """Run one stage replica until SIGTERM/SIGINT, then drain. Raises StartupError."""
    metrics = create_metrics(config.pipeline, config.stage)
    worker: Worker | None = None
    health = HealthServer(
        config.health_port,
        metrics.registry,
        ready=lambda: bool(worker and worker.ready),
        live=lambda: worker is None or worker.live(),
    )
    health.start()
    log.info("health_listening", port=health.port)
    observe = metrics.inference_latency.labels(config.pipeline, config.stage).observe
    model: Embedder | Ranker | None = None
    if config.stage_type in STAGES_NEEDING_MODEL:
        assert config.inference is not None  # guaranteed by WorkerConfig's validator
        inference = config.inference
        try:
            model = build_model(config, observe)
        except InferenceError as e:
            raise StartupError(str(e)) from e
        info = await _retrying(
            f"model backend {inference.backend} ({inference.triton_url})",
            config.startup_timeout_s,
            model.start,
        )
        log.info(
            "model_ready", model=info.name, version=info.version, max_batch=info.max_batch_size
        )
    what = f"Pulsar at {config.pulsar.service_url}"
    closables: list[Closable] = []
    try:
        client = connect(config)
    except PulsarError as e:
        raise StartupError(f"{what}: {e}") from e
    name = f"{config.pipeline}.{config.stage}"
    identity = f"{name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        source = await _retrying(
            what,
            config.startup_timeout_s,
            lambda: PulsarSource.subscribe(client, config, identity),
        )
        effectively_once = config.delivery.guarantee is DeliveryGuarantee.EFFECTIVELY_ONCE
        sinks = [
            await _retrying(
                what,
                config.startup_timeout_s,
                partial(PulsarSink.create_sequenced, client, t, config)
                if effectively_once
                else partial(PulsarSink.create, client, t, name),
            )
            for t in config.outputs
        ]
        dead_letter = await _retrying(
            what,
            config.startup_timeout_s,
            lambda: PulsarSink.create(client, config.delivery.dead_letter_topic, name),
        )
        retry = {
            topic: await _retrying(
                what, config.startup_timeout_s, partial(PulsarSink.create, client, topic, name)
            )
            for topic in [config.input.topic, *config.side_inputs().values()]
        }
        attempts = await _retrying(
            what,
            config.startup_timeout_s,
            lambda: PulsarAttemptLog.create(client, config.delivery.attempts_topic_name(), name),
        )
        topics = Topics(
            reader=lambda topic, after: _retrying(
                what,
                config.startup_timeout_s,
                lambda: PulsarReader.open(client, topic, after, name),
            ),
            sink=lambda topic: _retrying(
                what, config.startup_timeout_s, partial(PulsarSink.create, client, topic, name)
            ),
        )
        stage = await create_stage(
            StageContext(
                config.stage,
                config.stage_type,
                config.params,
                model if isinstance(model, Embedder) else None,
                pipeline=config.pipeline,
                topics=topics,
                state_topic=config.state.topic if config.state else None,
                registry=metrics.registry,
                identity=identity,
                closables=closables,
                ranker=model if isinstance(model, Ranker) else None,
                model_server=other_models(config.inference, observe),
                input_topic=config.input.topic,
                outputs=tuple(config.outputs),
            )
        )
        worker = Worker(
            config,
            source,
            sinks,
            dead_letter,
            retry,
            stage,
            metrics,
            backend_ready=model.backend.ready if model else _always_ready,
            attempts=attempts,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        log.info(
            "worker_started",
            input=config.input.topic,
            side_inputs=config.side_inputs(),
            outputs=config.outputs,
            consumer=identity,
        )
        await worker.run()
    finally:
        await _close_all(closables)
        if model is not None:
            await model.close()
        await asyncio.to_thread(client.close)
        health.stop()


async def _always_ready() -> bool:
    return True


async def _close_all(closables: list[Closable]) -> None:
    """Close what the stage opened, last opened first."""
    for closable in reversed(closables):
        try:
            await closable.close()
        except PulsarError as e:
            log.warning("close_failed", error=str(e))
