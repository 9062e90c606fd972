"""WorkerConfig: the one contract between the operator and the workers.

The operator renders it (as JSON in a ConfigMap mounted into the pod) and the worker parses it
once in ``__main__``. Field names are camelCase on the wire to match the ``Pipeline`` CRD.
This module imports nothing heavy: the operator imports it to render and validate.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

CONFIG_FILE_ENV = "STREAMVANE_WORKER_CONFIG_FILE"
"""Environment variable naming the JSON file that holds the WorkerConfig."""

CONFIG_JSON_ENV = "STREAMVANE_WORKER_CONFIG"
"""Environment variable holding the WorkerConfig JSON inline (takes precedence over the file)."""

HEALTH_PORT_ENV = "STREAMVANE_WORKER_HEALTH_PORT"
"""Environment variable overriding ``healthPort``; lets replicas sharing one host (the e2e
process runner) each serve probes on their own port."""

TOPIC_PATTERN = r"^(persistent|non-persistent)://[a-zA-Z0-9_.-]+/[a-zA-Z0-9_.-]+/[a-zA-Z0-9_.-]+$"


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class StageType(StrEnum):
    """Stage types the worker knows; each has a module in ``streamvane_worker.stages``."""

    PASSTHROUGH = "passthrough"
    TEXT_EMBEDDING = "text-embedding"
    TAGGING = "tagging"
    SAFETY = "safety"


class SubscriptionType(StrEnum):
    SHARED = "Shared"
    KEY_SHARED = "Key_Shared"
    FAILOVER = "Failover"


class DeliveryGuarantee(StrEnum):
    """What a stage promises about its outputs (see workers/README.md, Delivery)."""

    AT_LEAST_ONCE = "AtLeastOnce"
    """Every input yields its outputs at least once; faults can duplicate them."""
    EFFECTIVELY_ONCE = "EffectivelyOnce"
    """Outputs are written once per input position, whatever the faults: deterministic
    producer names, sequence ids from the input position, broker de-duplication."""


class PulsarSettings(_Model):
    service_url: str = Field(
        "pulsar://127.0.0.1:6650", description="Broker URL (pulsar:// or pulsar+ssl://)."
    )
    auth_token_file: Path | None = Field(
        None,
        description="File holding a JWT for token authentication, re-read whenever the client "
        "authenticates (a rotated token is picked up without a restart); none means no auth.",
    )
    tls_ca_file: Path | None = Field(
        None,
        description="CA bundle (PEM) that signed the broker's certificate (pulsar+ssl://; the "
        "hostname is always verified); none trusts the system roots.",
    )

    @model_validator(mode="after")
    def _ca_needs_tls(self) -> PulsarSettings:
        if self.tls_ca_file is not None and not self.service_url.startswith("pulsar+ssl://"):
            raise ValueError("pulsar.tlsCaFile is set but pulsar.serviceUrl is not pulsar+ssl://")
        return self


class InputSettings(_Model):
    topic: str = Field(..., pattern=TOPIC_PATTERN, description="Fully qualified input topic.")
    subscription: str = Field(
        ..., min_length=1, description="Subscription the stage consumes from."
    )
    subscription_type: SubscriptionType = Field(
        SubscriptionType.SHARED, description="Shared scales out; Key_Shared keeps per-key order."
    )
    receiver_queue_size: int = Field(
        1000, ge=1, le=100_000, description="Messages the client prefetches from the broker."
    )


class BatchingSettings(_Model):
    max_batch_size: int = Field(
        32, ge=1, le=4096, description="Largest micro-batch sent to the model."
    )
    max_delay_ms: int = Field(
        10, ge=0, le=60_000, description="How long a partial batch waits for more messages."
    )
    max_in_flight_batches: int = Field(
        4,
        ge=1,
        le=64,
        description="Batches being inferred or produced at once (backpressure bound).",
    )


def attempts_topic_of(dead_letter_topic: str) -> str:
    """The default journal of delivery attempts next to a stage's dead-letter topic (the
    operator creates it with the Pipeline's other topics)."""
    return f"{dead_letter_topic}-attempts"


class DeliverySettings(_Model):
    guarantee: DeliveryGuarantee = Field(
        DeliveryGuarantee.AT_LEAST_ONCE,
        description="AtLeastOnce, or EffectivelyOnce: outputs de-duplicated by the broker "
        "(needs a Failover subscription and one replica).",
    )
    max_redeliveries: int = Field(
        5, ge=1, le=100, description="Deliveries of a failing message before it is dead-lettered."
    )
    dead_letter_topic: str = Field(..., pattern=TOPIC_PATTERN, description="Where bad messages go.")
    negative_ack_delay_ms: int = Field(
        1000,
        ge=10,
        le=600_000,
        description="Delay before a transiently failed message is redelivered.",
    )
    max_message_bytes: int = Field(
        1_048_576, ge=1, description="Larger payloads are dead-lettered as oversize."
    )
    max_nesting_depth: int = Field(
        32,
        ge=2,
        le=500,
        description="Deeper JSON (arrays/objects within each other) is dead-lettered as too-deep.",
    )
    max_number_digits: int = Field(
        64,
        ge=1,
        le=4000,
        description="Integers with more digits are dead-lettered as number-too-large.",
    )
    max_crashes: int = Field(
        5,
        ge=1,
        le=100,
        description="Deliveries of a message that ended without an outcome (the worker died "
        "holding it) before it is quarantined in the dead-letter topic as crash-loop.",
    )
    attempts_topic: str | None = Field(
        None,
        pattern=TOPIC_PATTERN,
        description="Journal of delivery attempts that survives restarts; default "
        "<deadLetterTopic>-attempts.",
    )
    ack_timeout_ms: int = Field(
        600_000,
        ge=10_000,
        le=86_400_000,
        description="Backstop: a message neither acked nor nacked for this long is redelivered.",
    )
    max_in_flight_age_s: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="/healthz fails (the worker is restarted) when a message has been in flight "
        "longer than this while Pulsar and the model backend are up.",
    )

    def attempts_topic_name(self) -> str:
        return self.attempts_topic or attempts_topic_of(self.dead_letter_topic)


class InferenceSettings(_Model):
    backend: Literal["triton", "onnxruntime"] = Field(
        "triton",
        description="Triton over gRPC in production; in-process onnxruntime for local use.",
    )
    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC address host:port.")
    tls: bool = Field(False, description="Talk to Triton over TLS (gRPC).")
    # A plain Path: the operator renders this config for a file only the worker's pod has.
    tls_ca_file: Path | None = Field(
        None,
        description="PEM CA bundle that signed Triton's certificate; unset trusts the system roots.",
    )
    model_name: str = Field("all-minilm-l6-v2", min_length=1, description="Model name in Triton.")
    model_version: str = Field("", description="Model version; empty means Triton's latest.")
    timeout_ms: int = Field(10_000, ge=1, description="Deadline of one inference call.")
    onnx_path: Path | None = Field(None, description="ONNX file for the onnxruntime backend.")
    tokenizer_path: Path | None = Field(
        None, description="tokenizer.json of the model; None means the packaged default."
    )

    @model_validator(mode="after")
    def _consistent(self) -> InferenceSettings:
        if self.backend == "onnxruntime" and self.onnx_path is None:
            raise ValueError("inference.onnxPath is required when backend is 'onnxruntime'")
        if self.tls_ca_file is not None and not self.tls:
            raise ValueError("inference.tlsCaFile is set but inference.tls is false")
        return self


class Label(_Model):
    name: str = Field(
        ..., min_length=1, max_length=128, description="Label reported in the output."
    )
    description: str = Field(
        ..., min_length=1, max_length=2048, description="Text embedded as the label prototype."
    )


class TaggingParams(_Model):
    labels: list[Label] = Field(..., min_length=1, max_length=512, description="Candidate tags.")
    top_k: int = Field(3, ge=1, le=50, description="Tags returned per item.")
    min_score: float = Field(0.0, ge=-1.0, le=1.0, description="Cosine similarity floor.")


class SafetyCategory(_Model):
    name: str = Field(
        ..., min_length=1, max_length=128, description="Category reported in the output."
    )
    description: str = Field(
        ..., min_length=1, max_length=2048, description="Text embedded as the category prototype."
    )
    review_threshold: float = Field(..., ge=-1.0, le=1.0, description="Score at or above: review.")
    block_threshold: float = Field(..., ge=-1.0, le=1.0, description="Score at or above: block.")

    @model_validator(mode="after")
    def _block_above_review(self) -> SafetyCategory:
        if self.block_threshold < self.review_threshold:
            raise ValueError(f"category {self.name!r}: blockThreshold must be >= reviewThreshold")
        return self


class SafetyParams(_Model):
    categories: list[SafetyCategory] = Field(
        ..., min_length=1, max_length=128, description="Categories each item is scored against."
    )


class NoParams(_Model):
    pass


PARAMS_BY_STAGE: dict[StageType, type[_Model]] = {
    StageType.PASSTHROUGH: NoParams,
    StageType.TEXT_EMBEDDING: NoParams,
    StageType.TAGGING: TaggingParams,
    StageType.SAFETY: SafetyParams,
}
"""Which params model each stage type takes; the operator validates specs against it."""

STAGES_NEEDING_MODEL = frozenset({StageType.TEXT_EMBEDDING, StageType.TAGGING, StageType.SAFETY})

STAGES_NEEDING_MODEL_PER_ITEM = frozenset({StageType.TEXT_EMBEDDING})
"""Stage types that call the model for every item; tagging and safety need it at start (their
prototypes) and otherwise only for items that arrive without an upstream embedding."""


class WorkerConfig(_Model):
    """Everything one stage replica needs; nothing else configures a worker."""

    pipeline: str = Field(..., min_length=1, description="Pipeline name, for logs and metrics.")
    stage: str = Field(..., min_length=1, description="Stage name within the pipeline.")
    stage_type: StageType
    pulsar: PulsarSettings = PulsarSettings()
    input: InputSettings
    outputs: list[str] = Field(
        default_factory=list, description="Topics each result is published to."
    )
    batching: BatchingSettings = BatchingSettings()
    delivery: DeliverySettings
    inference: InferenceSettings | None = None
    params: dict[str, object] = Field(
        default_factory=dict, description="Stage-specific parameters."
    )
    health_port: int = Field(
        8080, ge=0, le=65535, description="HTTP port of /healthz, /readyz, /metrics; 0 picks one."
    )
    log_format: Literal["json", "console"] = Field(
        "json", description="json: one structlog JSON object per line; console: for humans."
    )
    startup_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="How long to retry reaching Pulsar and the model backend before exiting.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> WorkerConfig:
        for topic in self.outputs:
            if topic == self.input.topic:
                raise ValueError(f"output topic {topic} is the stage's own input")
        if (
            self.delivery.guarantee is DeliveryGuarantee.EFFECTIVELY_ONCE
            and self.input.subscription_type is not SubscriptionType.FAILOVER
        ):
            raise ValueError(
                "delivery.guarantee EffectivelyOnce needs input.subscriptionType Failover "
                "(one active consumer per input partition, so outputs are written in input order)"
            )
        if self.stage_type in STAGES_NEEDING_MODEL and self.inference is None:
            raise ValueError(f"stage type {self.stage_type} needs an 'inference' section")
        PARAMS_BY_STAGE[self.stage_type].model_validate(self.params)
        return self

    def typed_params(self) -> _Model:
        """The params parsed into the stage type's own model."""
        return PARAMS_BY_STAGE[self.stage_type].model_validate(self.params)
