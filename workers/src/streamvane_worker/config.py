"""WorkerConfig: the one contract between the operator and the workers.

The operator renders it (as JSON in a ConfigMap mounted into the pod) and the worker parses it
once in ``__main__``. Field names are camelCase on the wire to match the ``Pipeline`` CRD.
This module imports nothing heavy: the operator imports it to render and validate.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

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
MAX_TOPIC_LENGTH = 1024
"""Longest fully qualified topic name a stage parameter takes."""
LOCAL_TOPIC_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
"""A topic name within the Pipeline's Pulsar namespace (the operator qualifies it)."""
MAX_SEQUENCE_TOKENS = 256
"""The tokenizer truncates to this (``inference.tokenizer.MAX_TOKENS``, the model's training
length): no sequence-length bucket above it is ever needed."""
DEFAULT_SEQUENCE_BUCKETS: tuple[int, ...] = ()
"""Chosen by measurement on CPU (workers/README.md): padding only costs there, as Triton's CPU
model runs each request at its own shape."""


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
    USER_PROFILE = "user-profile"
    CANDIDATE_RETRIEVAL = "candidate-retrieval"
    RANKING = "ranking"
    TRAINING_EXAMPLES = "training-examples"
    ONLINE_TRAINING = "online-training"
    LABEL_EXAMPLES = "label-examples"


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
    sequence_buckets: tuple[int, ...] = Field(
        DEFAULT_SEQUENCE_BUCKETS,
        description="Token lengths (increasing, at most 256) a batch is padded up to, the "
        "smallest that holds its longest text, so that Triton's dynamic batcher can merge "
        "equal shapes (e.g. [16, 32, 64, 128, 256] on a GPU); empty pads each batch to its "
        "longest text only.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> InferenceSettings:
        if self.backend == "onnxruntime" and self.onnx_path is None:
            raise ValueError("inference.onnxPath is required when backend is 'onnxruntime'")
        if self.tls_ca_file is not None and not self.tls:
            raise ValueError("inference.tlsCaFile is set but inference.tls is false")
        buckets = self.sequence_buckets
        if any(b < 1 or b > MAX_SEQUENCE_TOKENS for b in buckets) or list(buckets) != sorted(
            set(buckets)
        ):
            raise ValueError(
                f"inference.sequenceBuckets must increase, each within 1..{MAX_SEQUENCE_TOKENS}"
            )
        return self


ExampleTexts = list[Annotated[str, Field(min_length=1, max_length=2048)]]


def _examples_field() -> Any:
    return Field(
        default_factory=list,
        max_length=256,
        description="Example texts of this class. Their centroid joins the description as a "
        "prototype (zero-shot mode); in classifier mode they are its training examples.",
    )


def _model_versions_field(description: str) -> Any:
    """A topic of the online-training stage's ModelVersion announcements, to follow."""
    return Field(
        None,
        pattern=f"{TOPIC_PATTERN}|{LOCAL_TOPIC_PATTERN}",
        max_length=MAX_TOPIC_LENGTH,
        description=description,
    )


class ScoringMode(StrEnum):
    ZERO_SHOT = "zero-shot"
    """Cosine similarity to each class's prototypes (description, examples' centroid)."""
    CLASSIFIER = "classifier"
    """A linear head (softmax regression) trained at start on the classes' examples and
    descriptions; scores are its probabilities."""


def _mode_field() -> Any:
    return Field(
        ScoringMode.ZERO_SHOT,
        description="zero-shot: cosine similarity to prototypes; classifier: a linear head "
        "trained at start on the examples (scores are probabilities).",
    )


class Label(_Model):
    name: str = Field(
        ..., min_length=1, max_length=128, description="Label reported in the output."
    )
    description: str = Field(
        ..., min_length=1, max_length=2048, description="Text embedded as the label prototype."
    )
    examples: ExampleTexts = _examples_field()


class TaggingParams(_Model):
    labels: list[Label] = Field(..., min_length=1, max_length=512, description="Candidate tags.")
    top_k: int = Field(3, ge=1, le=50, description="Tags returned per item.")
    min_score: float = Field(0.0, ge=-1.0, le=1.0, description="Score floor of a tag.")
    min_margin: float | None = Field(
        None,
        ge=0.0,
        le=2.0,
        description="Tag only when the best label's score beats the runner-up's by at least "
        "this much (then that one label); unset: no margin rule.",
    )
    mode: ScoringMode = _mode_field()
    head_model: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Classifier mode: the Triton model of a head trained online from a labelled "
        "topic (label-examples -> online-training, built from models/' label-head): a label's "
        "score is the head's probability for the (item embedding, label description embedding) "
        "pair, and the version that scored it is the tags' stage record's modelVersion. Unset: "
        "the head is trained at start on the labels' examples.",
    )
    model_versions_topic: str | None = _model_versions_field(
        "With headModel: the online-training stage's ModelVersion announcements, "
        "followed as the ranking stage follows them (a local name is in the Pipeline's Pulsar "
        "namespace). Unset: Triton's default version of headModel."
    )

    @model_validator(mode="after")
    def _head_in_classifier_mode(self) -> TaggingParams:
        if self.head_model is not None and self.mode is not ScoringMode.CLASSIFIER:
            raise ValueError("headModel is a trained head: it needs mode: classifier")
        if self.model_versions_topic is not None and self.head_model is None:
            raise ValueError("modelVersionsTopic follows the versions of headModel: set headModel")
        return self


class LabelExamplesParams(_Model):
    labels: list[Label] = Field(
        ...,
        min_length=2,
        max_length=512,
        description="The labels the head learns, as the tagging stage that serves it names and "
        "describes them: each labelled item becomes one training example per label (positive "
        "for the item's own tags, negative for the others).",
    )
    negative_sample_rate: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Share of the negative examples kept (deterministic per item and label); "
        "the rate is recorded in each example so the learner weighs it back.",
    )


class SafetyCategory(_Model):
    name: str = Field(
        ..., min_length=1, max_length=128, description="Category reported in the output."
    )
    description: str = Field(
        ..., min_length=1, max_length=2048, description="Text embedded as the category prototype."
    )
    examples: ExampleTexts = _examples_field()
    review_threshold: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="Score at or above: review. Required unless params.calibration sets it.",
    )
    block_threshold: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="Score at or above: block. Required unless params.calibration sets it.",
    )

    @model_validator(mode="after")
    def _block_above_review(self) -> SafetyCategory:
        review, block = self.review_threshold, self.block_threshold
        if review is not None and block is not None and block < review:
            raise ValueError(f"category {self.name!r}: blockThreshold must be >= reviewThreshold")
        return self


class SafetyCalibration(_Model):
    """Thresholds set from benign texts: each category's review (block) threshold is the
    lowest score that flags at most this share of the benign examples."""

    benign_examples: ExampleTexts = Field(
        ...,
        min_length=20,
        max_length=4096,
        description="Texts that must not be flagged: the false positives are counted on them.",
    )
    review_false_positive_rate: float = Field(
        0.05, gt=0.0, lt=1.0, description="Share of benign examples sent to review, at most."
    )
    block_false_positive_rate: float = Field(
        0.01, gt=0.0, lt=1.0, description="Share of benign examples blocked, at most."
    )

    @model_validator(mode="after")
    def _block_rarer_than_review(self) -> SafetyCalibration:
        if self.block_false_positive_rate > self.review_false_positive_rate:
            raise ValueError("blockFalsePositiveRate must be <= reviewFalsePositiveRate")
        return self


class SafetyParams(_Model):
    categories: list[SafetyCategory] = Field(
        ..., min_length=1, max_length=128, description="Categories each item is scored against."
    )
    mode: ScoringMode = _mode_field()
    calibration: SafetyCalibration | None = Field(
        None,
        description="Set the categories' thresholds to a target false-positive rate on benign "
        "examples (in classifier mode they are also the head's benign class); thresholds "
        "given on a category override it.",
    )

    @model_validator(mode="after")
    def _thresholds_known(self) -> SafetyParams:
        if self.calibration is None:
            missing = [
                c.name
                for c in self.categories
                if c.review_threshold is None or c.block_threshold is None
            ]
            if missing:
                raise ValueError(
                    f"categories {missing} need reviewThreshold and blockThreshold, "
                    "or params.calibration to set them"
                )
        if self.mode == ScoringMode.CLASSIFIER and self.calibration is None:
            raise ValueError(
                "mode classifier needs params.calibration.benignExamples (its benign class)"
            )
        return self


class NoParams(_Model):
    pass


class EventWeights(_Model):
    """How much one engagement of each type moves a user's interest vector toward the item
    (negative: away from it)."""

    impression: float = Field(0.0, ge=-10, le=10, description="Item shown, no action taken.")
    view: float = Field(1.0, ge=-10, le=10, description="Item opened or watched.")
    like: float = Field(3.0, ge=-10, le=10, description="Item liked.")
    share: float = Field(4.0, ge=-10, le=10, description="Item shared.")
    skip: float = Field(-1.0, ge=-10, le=10, description="Item skipped or dismissed.")


class UserProfileParams(_Model):
    catalogue_topic: str = Field(
        ...,
        pattern=TOPIC_PATTERN,
        max_length=MAX_TOPIC_LENGTH,
        description="Fully qualified output topic of the content pipeline, read as the catalogue "
        "(an empty message keyed by an item id deletes that item).",
    )
    half_life_s: float = Field(
        86_400.0,
        gt=0,
        le=31_536_000,
        description="Seconds of event time over which an engagement's weight halves.",
    )
    event_weights: EventWeights = Field(
        EventWeights(), description="Weight of each engagement type."
    )
    dwell_weight: float = Field(
        1.0,
        ge=0,
        le=10,
        description="Weight added to a non-skip engagement at a dwell of dwellCapMs or more "
        "(proportionally less below).",
    )
    dwell_cap_ms: int = Field(
        30_000, ge=1, le=86_400_000, description="Dwell at which dwellWeight is reached in full."
    )
    history_size: int = Field(
        50,
        ge=1,
        le=1000,
        description="Recently engaged item ids kept per user, most recent first (retrieval "
        "excludes them as seen).",
    )
    max_users: int = Field(
        100_000,
        ge=1,
        le=100_000_000,
        description="Users held in memory per replica; beyond it the least recently active is "
        "evicted (it restarts from an empty profile if it comes back).",
    )
    user_ttl_s: float = Field(
        7 * 86_400.0,
        gt=0,
        description="Users not engaging for this long (wall clock) are evicted from memory.",
    )


class HnswParams(_Model):
    """HNSW graph settings (hnswlib); higher values trade speed and memory for recall."""

    m: int = Field(16, ge=2, le=128, description="Links per node (M).")
    ef_construction: int = Field(
        200, ge=8, le=4096, description="Candidate list size while inserting (efConstruction)."
    )
    ef_search: int = Field(
        128,
        ge=1,
        le=4096,
        description="Candidate list size while querying (ef); at least topK is used.",
    )


class CandidateRetrievalParams(_Model):
    catalogue_topic: str = Field(
        ...,
        pattern=TOPIC_PATTERN,
        max_length=MAX_TOPIC_LENGTH,
        description="Fully qualified output topic of the content pipeline, read as the catalogue "
        "(an empty message keyed by an item id deletes that item).",
    )
    top_k: int = Field(100, ge=1, le=1000, description="Candidates emitted per user profile.")
    exclude_review: bool = Field(
        False,
        description="Also exclude items whose safety decision is review (blocked items are "
        "always excluded).",
    )
    index: HnswParams = Field(HnswParams(), description="ANN index settings.")
    snapshot_dir: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="Directory the index is snapshotted to (with its catalogue position) so a "
        "restart resumes from it instead of re-reading the catalogue; none: no snapshots.",
    )
    snapshot_interval_s: float = Field(
        60.0, ge=1, le=86_400, description="Least time between two snapshots of a changed index."
    )


class RankingParams(_Model):
    catalogue_topic: str = Field(
        ...,
        pattern=TOPIC_PATTERN,
        max_length=MAX_TOPIC_LENGTH,
        description="Fully qualified output topic of the content pipeline, read as the catalogue "
        "(an empty message keyed by an item id deletes that item).",
    )
    top_k: int = Field(
        10,
        ge=1,
        le=1000,
        description="Ranked items emitted per user: the best-scored of the candidates still in "
        "the catalogue and not blocked.",
    )
    model_versions_topic: str | None = _model_versions_field(
        "Topic of ModelVersion announcements (the online-training stage's output), "
        "read from the start and followed: each request asks Triton for the newest announced "
        "serving version, falling back to the last one that served while it is not loaded. A "
        "local name is in the Pipeline's Pulsar namespace. Unset: Triton's default version."
    )


PositiveEvent = Literal["impression", "view", "like", "share", "skip"]


class TrainingExamplesParams(_Model):
    engagements_topic: str = Field(
        ...,
        min_length=1,
        max_length=200,
        pattern=LOCAL_TOPIC_PATTERN,
        description="Topic of the Pipeline's namespace holding the Engagement events (keyed by "
        "userId, like the Recommendations input); the stage reads it with its own subscription "
        "and subscription type, so one user's two streams reach the same replica.",
    )
    window_seconds: float = Field(
        600.0,
        gt=0,
        le=86_400,
        description="Event time after a Recommendations message's rankedAt during which an "
        "engagement answers it; a served item without a qualifying one by then is a negative.",
    )
    allowed_lateness_seconds: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="How far the watermark trails the newest event time seen: events that much "
        "out of order still join.",
    )
    idle_flush_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Wall-clock seconds without input after which the watermark advances with "
        "the wall clock, so windows still close when traffic stops.",
    )
    positive_events: list[PositiveEvent] = Field(
        ["view", "like", "share"],
        min_length=1,
        max_length=5,
        description="Engagement types that make a served item a positive.",
    )
    min_dwell_ms: int = Field(
        0,
        ge=0,
        le=86_400_000,
        description="Least dwell of a qualifying engagement (0: any).",
    )
    negatives: Literal["served", "shown"] = Field(
        "served",
        description="Which served items without a qualifying engagement are negatives: served "
        "(every one) or shown (only those the user answered with any engagement of the request, "
        "an impression or a skip: a list computed but never shown says nothing about its items; "
        "the others yield no example).",
    )
    negative_sample_rate: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Share of negatives kept (chosen by example id, so a replay keeps the same "
        "ones); recorded on each example as sampleRate.",
    )
    late_topic: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=LOCAL_TOPIC_PATTERN,
        description="Topic of the Pipeline's namespace engagements that join nothing go to, with "
        "the reason in the streamvane-late-reason property; default <pipeline>-<stage>-late.",
    )
    max_requests: int = Field(
        100_000,
        ge=1,
        le=100_000_000,
        description="Served requests held in memory per replica (open and recently closed); "
        "beyond it the least recently touched is evicted.",
    )


class OnlineTrainingParams(_Model):
    model_repository: str = Field(
        ...,
        min_length=1,
        max_length=1024,
        description="Directory of Triton's model repository as mounted in the worker (the "
        "volume Triton serves): each promoted version is written to <modelRepository>/<model>/"
        "<version>/ there, then loaded through Triton's repository API.",
    )
    export_every_examples: int = Field(
        10_000,
        ge=1,
        le=100_000_000,
        description="Examples learned after which the current weights become a candidate version.",
    )
    export_interval_s: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="Seconds after which the weights become a candidate version even before "
        "exportEveryExamples, if anything was learned since the last one.",
    )
    evaluation_examples: int = Field(
        2000,
        ge=10,
        le=10_000_000,
        description="Examples a candidate is evaluated on before it may be promoted: it and "
        "the serving version score each of the next ones before the trainer learns from it "
        "(progressive validation); also the sliding window of the progressive AUC metric.",
    )
    promotion_margin: float = Field(
        0.01,
        ge=0,
        le=1,
        description="How much lower a candidate's AUC may be than the serving version's on "
        "the evaluation window and still be promoted; lower still, it is kept out.",
    )
    learning_rate: float = Field(
        0.003, gt=0, le=1, description="Adam's step size for the online updates."
    )
    pinned_version: int | None = Field(
        None,
        ge=1,
        description="Serve this version (one in the repository) whatever the evaluations say: "
        "a rollback by hand. The learner goes on learning, but no candidate is exported or "
        "judged while pinned. Unset: the guard decides again from the last version it "
        "promoted.",
    )
    keep_versions: int = Field(
        3,
        ge=1,
        le=100,
        description="Versions Triton keeps loaded: the serving one and those promoted before "
        "it, which the ranking stage falls back to.",
    )


PARAMS_BY_STAGE: dict[StageType, type[_Model]] = {
    StageType.PASSTHROUGH: NoParams,
    StageType.TEXT_EMBEDDING: NoParams,
    StageType.TAGGING: TaggingParams,
    StageType.SAFETY: SafetyParams,
    StageType.USER_PROFILE: UserProfileParams,
    StageType.CANDIDATE_RETRIEVAL: CandidateRetrievalParams,
    StageType.RANKING: RankingParams,
    StageType.TRAINING_EXAMPLES: TrainingExamplesParams,
    StageType.ONLINE_TRAINING: OnlineTrainingParams,
    StageType.LABEL_EXAMPLES: LabelExamplesParams,
}
"""Which params model each stage type takes; the operator validates specs against it."""

STAGES_NEEDING_MODEL = frozenset(
    {
        StageType.TEXT_EMBEDDING,
        StageType.TAGGING,
        StageType.SAFETY,
        StageType.RANKING,
        StageType.ONLINE_TRAINING,
        StageType.LABEL_EXAMPLES,
    }
)

RANKER_STAGES = frozenset({StageType.RANKING, StageType.ONLINE_TRAINING})
"""Stage types whose model is the ranker on Triton: one scores with it, one trains it."""

STAGES_NEEDING_MODEL_PER_ITEM = frozenset({StageType.TEXT_EMBEDDING, StageType.RANKING})
"""Stage types that call the model for every message; tagging and safety need it at start (their
prototypes) and otherwise only for items that arrive without an upstream embedding."""

EMBEDDING_STAGES = frozenset(
    {StageType.TEXT_EMBEDDING, StageType.TAGGING, StageType.SAFETY, StageType.LABEL_EXAMPLES}
)
"""Stage types whose model is the text embedding model (the ranking stage's is a ranker)."""

MESSAGES_BY_STAGE: dict[StageType, tuple[str, str]] = {
    StageType.PASSTHROUGH: ("ContentItem", "ContentItem"),
    StageType.TEXT_EMBEDDING: ("ContentItem", "ContentItem"),
    StageType.TAGGING: ("ContentItem", "ContentItem"),
    StageType.SAFETY: ("ContentItem", "ContentItem"),
    StageType.USER_PROFILE: ("Engagement", "UserProfile"),
    StageType.CANDIDATE_RETRIEVAL: ("UserProfile", "Candidates"),
    StageType.RANKING: ("Candidates", "Recommendations"),
    StageType.TRAINING_EXAMPLES: ("Recommendations", "TrainingExample"),
    StageType.ONLINE_TRAINING: ("TrainingExample", "ModelVersion"),
    StageType.LABEL_EXAMPLES: ("ContentItem", "TrainingExample"),
}
"""Names of the message models each stage type reads and writes, for the operator to check
that a stage reads what the stage feeding it writes (the stage registry holds the models)."""

SIDE_INPUTS_BY_STAGE: dict[StageType, dict[str, str]] = {
    StageType.TRAINING_EXAMPLES: {"engagementsTopic": "Engagement"},
}
"""Topics a stage type reads besides its input, with the same subscription: the param naming
each (a local topic name) and the message model it holds."""

STATEFUL_STAGES = frozenset(
    {StageType.USER_PROFILE, StageType.TRAINING_EXAMPLES, StageType.ONLINE_TRAINING}
)
"""Stage types keeping keyed state: they need a ``state`` topic and a keyed subscription."""

SINGLE_WRITER_STAGES = frozenset(
    {StageType.TRAINING_EXAMPLES, StageType.ONLINE_TRAINING, StageType.LABEL_EXAMPLES}
)
"""Stage types that write their outputs themselves (not one output per input), so they cannot
be effectively-once."""

SINGLE_CONSUMER_STAGES = frozenset({StageType.ONLINE_TRAINING})
"""Stage types that must see their whole input in one process (one model learns from every
example): a Failover subscription and at most one replica."""


def side_input_topics(stage_type: StageType, params: dict[str, object]) -> dict[str, str]:
    """Param name -> the local topic each side input of a stage reads."""
    return {
        param: str(params[param])
        for param in SIDE_INPUTS_BY_STAGE.get(stage_type, {})
        if isinstance(params.get(param), str)
    }


def late_topic(pipeline: str, stage: str, params: dict[str, object]) -> str:
    """The local topic a training-examples stage sends engagements that join nothing to."""
    named = params.get("lateTopic")
    return named if isinstance(named, str) else f"{pipeline}-{stage}-late"


def qualify_like(topic: str, local: str) -> str:
    """``local`` in the tenant/namespace of the fully qualified ``topic``."""
    return f"{topic.rsplit('/', 1)[0]}/{local}"


class StateSettings(_Model):
    topic: str = Field(
        ...,
        pattern=TOPIC_PATTERN,
        description="Compacted topic the stage checkpoints its keyed state to, keyed like its "
        "input; a starting replica rebuilds its state from it.",
    )


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
    state: StateSettings | None = Field(None, description="Keyed state of a stateful stage.")
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
        if (
            self.stage_type in RANKER_STAGES
            and self.inference is not None
            and self.inference.backend != "triton"
        ):
            raise ValueError(
                f"stage type {self.stage_type}'s model is the ranker on Triton: "
                "inference.backend must be triton"
            )
        if (
            self.stage_type in SINGLE_CONSUMER_STAGES
            and self.input.subscription_type is not SubscriptionType.FAILOVER
        ):
            raise ValueError(
                f"stage type {self.stage_type} learns from every example in one process: its "
                "input needs a Failover subscription"
            )
        if self.stage_type in STATEFUL_STAGES:
            if self.state is None:
                raise ValueError(f"stage type {self.stage_type} needs a 'state' section")
            if self.input.subscription_type == SubscriptionType.SHARED:
                raise ValueError(
                    f"stage type {self.stage_type} keeps per-key state: its input needs a "
                    "Key_Shared or Failover subscription"
                )
        if (
            self.stage_type in SINGLE_WRITER_STAGES
            and self.delivery.guarantee is DeliveryGuarantee.EFFECTIVELY_ONCE
        ):
            raise ValueError(
                f"stage type {self.stage_type} writes its outputs itself (not one per input "
                "position): delivery.guarantee must be AtLeastOnce (its outputs carry ids)"
            )
        PARAMS_BY_STAGE[self.stage_type].model_validate(self.params)
        for topic in self.side_inputs().values():
            if topic == self.input.topic or topic in self.outputs:
                raise ValueError(f"side input {topic} is the stage's input or one of its outputs")
        return self

    def side_inputs(self) -> dict[str, str]:
        """Param name -> the fully qualified topic of each side input (same namespace as the
        input topic), read with the input's subscription."""
        return {
            param: qualify_like(self.input.topic, local)
            for param, local in side_input_topics(self.stage_type, self.params).items()
        }

    def typed_params(self) -> _Model:
        """The params parsed into the stage type's own model."""
        return PARAMS_BY_STAGE[self.stage_type].model_validate(self.params)
