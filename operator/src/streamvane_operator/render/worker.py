"""A Pipeline stage -> the WorkerConfig its replicas run with (the operator/worker contract)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from streamvane_operator.api.common import SecretKeyRef
from streamvane_operator.api.pipeline import PipelineSpec, StageSpec
from streamvane_operator.api.validation import (
    InvalidSpecError,
    dead_letter_topic,
    describe,
    state_topic,
    subscription_name,
)
from streamvane_operator.render.backend import ResolvedBackend
from streamvane_operator.render.topology import qualified
from streamvane_worker.config import (
    STATEFUL_STAGES,
    DeliverySettings,
    InferenceSettings,
    InputSettings,
    PulsarSettings,
    StageType,
    StateSettings,
    WorkerConfig,
)

HEALTH_PORT = 8080
CONFIG_DIR = "/etc/streamvane"
CONFIG_FILE_NAME = "worker.json"
SECRETS_DIR = "/var/run/secrets/streamvane"


@dataclass(frozen=True)
class WorkerDefaults:
    """Operator-wide settings that shape every worker."""

    image: str
    log_format: str = "json"


@dataclass(frozen=True)
class SecretFile:
    """One key of a Secret that the worker reads as a file, mounted read-only at ``path``."""

    volume: str
    ref: SecretKeyRef
    file_name: str

    @property
    def directory(self) -> str:
        return f"{SECRETS_DIR}/{self.volume}"

    @property
    def path(self) -> Path:
        return Path(self.directory, self.file_name)


def pulsar_token(spec: PipelineSpec) -> SecretFile | None:
    ref = spec.pulsar.auth_secret_ref
    return SecretFile("pulsar", ref, "token") if ref else None


def pulsar_ca(spec: PipelineSpec) -> SecretFile | None:
    """The brokers' CA, mounted where workers connect over TLS."""
    ref = spec.pulsar.ca_secret_ref
    return SecretFile("pulsar-ca", ref, "ca.crt") if ref and spec.pulsar.tls_workers else None


def triton_ca(stage: StageSpec, backends: Mapping[str, ResolvedBackend]) -> SecretFile | None:
    backend = backends.get(stage.model.backend) if stage.model else None
    ref = backend.tls.ca_secret_ref if backend else None
    return SecretFile("triton-ca", ref, "ca.crt") if ref else None


def trainer_claim(stage: StageSpec, backends: Mapping[str, ResolvedBackend]) -> str | None:
    """The PVC an online-training stage writes its versions to: the model repository of the
    managed backend serving its model; None for any other stage or backend."""
    if stage.type is not StageType.ONLINE_TRAINING or stage.model is None:
        return None
    backend = backends.get(stage.model.backend)
    return backend.model_claim if backend else None


def secret_files(
    spec: PipelineSpec, stage: StageSpec, backends: Mapping[str, ResolvedBackend]
) -> list[SecretFile]:
    """The Secrets a stage's worker pods mount."""
    files = (pulsar_token(spec), pulsar_ca(spec), triton_ca(stage, backends))
    return [f for f in files if f is not None]


MODEL_VERSIONS_PARAM = "modelVersionsTopic"
"""The ranking stage's topic of model-version announcements (a local name or a full one)."""


def model_versions_topic(spec: PipelineSpec, stage: StageSpec) -> str | None:
    """The fully qualified topic a stage follows model versions on, if it names one."""
    named = stage.typed_params().get(MODEL_VERSIONS_PARAM)
    if not isinstance(named, str):
        return None
    return named if "://" in named else qualified(spec.pulsar.tenant, spec.pulsar.namespace, named)


def worker_params(spec: PipelineSpec, stage: StageSpec) -> dict[str, object]:
    """The stage's params for its worker, with topics local to the Pipeline qualified."""
    params = stage.typed_params()
    versions = model_versions_topic(spec, stage)
    return params if versions is None else {**params, MODEL_VERSIONS_PARAM: versions}


def worker_config(
    namespace: str,
    pipeline: str,
    spec: PipelineSpec,
    stage: StageSpec,
    backends: Mapping[str, ResolvedBackend],
    defaults: WorkerDefaults,
) -> WorkerConfig:
    """Raises InvalidSpecError when the stage cannot become a valid WorkerConfig."""
    pulsar = spec.pulsar

    def topic(local: str) -> str:
        return qualified(pulsar.tenant, pulsar.namespace, local)

    inference = None
    if stage.model is not None and stage.model.backend in backends:
        backend = backends[stage.model.backend]
        ca = triton_ca(stage, backends)
        inference = InferenceSettings(
            backend="triton",
            triton_url=backend.url,
            tls=backend.tls.enabled,
            tls_ca_file=ca.path if ca else None,
            model_name=stage.model.name,
            model_version=stage.model.version,
            timeout_ms=backend.timeout_ms,
        )
    token, pulsar_tls_ca = pulsar_token(spec), pulsar_ca(spec)
    try:
        return WorkerConfig.model_validate(
            {
                "pipeline": pipeline,
                "stage": stage.name,
                "stage_type": stage.type,
                "pulsar": PulsarSettings(
                    service_url=pulsar.service_url,
                    auth_token_file=token.path if token else None,
                    tls_ca_file=pulsar_tls_ca.path if pulsar_tls_ca else None,
                ),
                "input": InputSettings(
                    topic=topic(stage.input.topic),
                    subscription=subscription_name(namespace, pipeline, stage),
                    subscription_type=stage.input.subscription_type,
                ),
                "outputs": [topic(t) for t in stage.outputs],
                "batching": stage.batching,
                "delivery": DeliverySettings(
                    guarantee=stage.delivery.guarantee,
                    max_redeliveries=stage.delivery.max_redeliveries,
                    negative_ack_delay_ms=stage.delivery.negative_ack_delay_ms,
                    dead_letter_topic=topic(dead_letter_topic(pipeline, stage)),
                ),
                "inference": inference,
                "params": worker_params(spec, stage),
                "state": StateSettings(topic=topic(state_topic(pipeline, stage)))
                if stage.type in STATEFUL_STAGES
                else None,
                "health_port": HEALTH_PORT,
                "log_format": defaults.log_format,
            }
        )
    except ValidationError as e:
        raise InvalidSpecError(describe(e, f"stage {stage.name!r} worker config")) from e


def config_json(config: WorkerConfig) -> str:
    """The ConfigMap payload; stable for equal configs so its hash only moves on change."""
    return config.model_dump_json(by_alias=True, exclude_none=True, indent=2)
