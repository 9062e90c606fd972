"""``InferenceBackend``: where stages send inference requests (a Triton server)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from streamvane_operator.api.common import (
    HOST,
    PORT,
    Condition,
    Image,
    Model,
    Resources,
    SecretKeyRef,
)

TRITON_GRPC_PORT = 8001
TRITON_HTTP_PORT = 8000
TRITON_METRICS_PORT = 8002


class TLSSpec(Model):
    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.caSecretRef) || self.enabled",
                    "message": "caSecretRef needs enabled: true",
                }
            ]
        }
    }

    enabled: bool = Field(
        False, description="Workers talk to the server over TLS (gRPC) and verify its certificate."
    )
    ca_secret_ref: SecretKeyRef | None = Field(
        None,
        description="Secret key holding the CA bundle (PEM) that signed the server certificate, "
        "mounted into workers; unset trusts the system roots of the worker image.",
    )

    @model_validator(mode="after")
    def _ca_needs_tls(self) -> TLSSpec:
        if self.ca_secret_ref is not None and not self.enabled:
            raise ValueError("caSecretRef needs enabled: true")
        return self


class Timeouts(Model):
    request_ms: int = Field(10_000, ge=1, le=600_000, description="Deadline of one inference call.")
    connect_ms: int = Field(
        5_000,
        ge=1,
        le=600_000,
        description="How long the operator's preflight waits for Triton to answer whether it "
        "serves a model, before an edit rolls.",
    )


class EndpointSpec(Model):
    url: str = Field(
        ...,
        max_length=253,
        pattern=rf"^{HOST}:{PORT}$",
        description="Triton gRPC address as host:port (port 1-65535), e.g. "
        "triton.inference.svc:8001.",
    )
    metrics_url: str | None = Field(
        None,
        max_length=512,
        pattern=r"^https?://[^\s]+$",
        description="Triton's Prometheus metrics, e.g. http://triton.inference.svc:8002/metrics. "
        "Autoscaled stages read the queue time of their model there and do not add replicas "
        "while the server queues requests; none: no such guard.",
    )
    tls: TLSSpec = TLSSpec()


class ModelRepository(Model):
    uri: str = Field(
        ...,
        min_length=1,
        max_length=1024,
        pattern=r"^(s3://|gs://|as://|/)[^\s]*$",
        description="Triton --model-repository: s3://, gs://, as:// or a path in the container.",
    )
    persistent_volume_claim: str | None = Field(
        None,
        max_length=253,
        description="PVC mounted at /models (then use a uri under /models), read-only in Triton. "
        "An online-training stage on this backend mounts it read-write at /models too and writes "
        "its versions there: give it ReadWriteMany access where Triton and the trainer may run "
        "on different nodes.",
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        None,
        description="Secret whose keys become env vars of the server (cloud storage credentials).",
    )


class ManagedSpec(Model):
    image: Image = Field("nvcr.io/nvidia/tritonserver:24.08-py3", description="Triton image.")
    replicas: int = Field(1, ge=1, le=64, description="Triton replicas.")
    gpus: int = Field(1, ge=0, le=8, description="nvidia.com/gpu per replica; 0 runs on CPU.")
    model_repository: ModelRepository
    model_control: Literal["none", "explicit"] = Field(
        "none",
        description="Triton's --model-control-mode. none: the repository is loaded once at start. "
        "explicit: every model is loaded at start, then what the repository API asks; an "
        "online-training stage loads its new versions that way and needs it.",
    )
    resources: Resources = Resources(
        requests={"cpu": "2", "memory": "8Gi"}, limits={"memory": "16Gi"}
    )


class InferenceBackendSpec(Model):
    """Exactly one of ``endpoint`` (an existing server) or ``managed`` (the operator runs it)."""

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.endpoint) != has(self.managed)",
                    "message": "set exactly one of endpoint or managed",
                }
            ]
        }
    }

    endpoint: EndpointSpec | None = Field(None, description="An existing Triton server.")
    managed: ManagedSpec | None = Field(
        None, description="A Triton Deployment and Service the operator runs in this namespace."
    )
    timeouts: Timeouts = Timeouts()

    @model_validator(mode="after")
    def _one_mode(self) -> InferenceBackendSpec:
        if (self.endpoint is None) == (self.managed is None):
            raise ValueError("set exactly one of endpoint or managed")
        return self


class InferenceBackendStatus(Model):
    observed_generation: int | None = None
    url: str = Field("", description="gRPC address stages use.")
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
