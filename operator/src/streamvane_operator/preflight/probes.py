"""The network side of the preflight: a TCP connect to the broker, gRPC ModelReady to Triton.

The operator never imports pulsar-client or tritonclient. The broker check is a TCP connect to
each host of the service URL (a listener answers; TLS and auth are the workers' concern).
The model check is Triton's ``inference.GRPCInferenceService/ModelReady`` call, framed by
hand over HTTP/2 (httpx), on the same gRPC address the workers use.
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass

import httpx

from streamvane_operator.preflight.errors import PreflightError

PULSAR_PORTS = {"pulsar": 6650, "pulsar+ssl": 6651}
MODEL_READY = "/inference.GRPCInferenceService/ModelReady"


@dataclass(frozen=True)
class ModelCheck:
    """One model on one Triton server, as a stage's workers will ask for it."""

    url: str
    """gRPC address host:port."""
    model: str
    version: str = ""
    tls: bool = False
    ca_pem: str | None = None
    """CA bundle that signed the server certificate; None trusts the system roots."""
    timeout_s: float = 5.0


def broker_hosts(service_url: str) -> list[tuple[str, int]]:
    """``pulsar://a:6650,b:6650`` -> [(a, 6650), (b, 6650)]; default ports by scheme."""
    scheme, _, rest = service_url.partition("://")
    default = PULSAR_PORTS.get(scheme, 6650)
    hosts = []
    for part in rest.split("/")[0].split(","):
        host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
        hosts.append((host.strip("[]"), int(port) if port.isdigit() else default))
    return hosts


def check_broker(service_url: str, timeout_s: float = 5.0) -> None:
    """Raises PreflightError unless some host of ``service_url`` accepts a TCP connection."""
    errors = []
    for host, port in broker_hosts(service_url):
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return
        except OSError as e:
            errors.append(f"{host}:{port}: {e.strerror or e}")
    raise PreflightError(f"Pulsar broker at {service_url} does not answer ({'; '.join(errors)})")


def model_ready_request(model: str, version: str) -> bytes:
    """A gRPC-framed ModelReadyRequest {name = 1; version = 2}."""
    message = _string_field(1, model) + (_string_field(2, version) if version else b"")
    return struct.pack(">BI", 0, len(message)) + message


def model_ready_response(body: bytes) -> bool:
    """ModelReadyResponse {bool ready = 1} out of a gRPC-framed body."""
    if len(body) < 5:
        raise ValueError("no gRPC message in the response")
    (length,) = struct.unpack(">I", body[1:5])
    return body[5 : 5 + length] == b"\x08\x01"


def check_model(check: ModelCheck) -> None:
    """Raises PreflightError unless Triton at ``check.url`` says the model is ready."""
    what = f"Triton at {check.url} does not serve model {check.model!r}" + (
        f" version {check.version}" if check.version else ""
    )
    scheme = "https" if check.tls else "http"
    verify: ssl.SSLContext | bool = True
    if check.tls:
        verify = ssl.create_default_context(cadata=check.ca_pem) if check.ca_pem else True
    try:
        with httpx.Client(
            http1=False, http2=True, verify=verify, timeout=check.timeout_s
        ) as client:
            response = client.post(
                f"{scheme}://{check.url}{MODEL_READY}",
                content=model_ready_request(check.model, check.version),
                headers={"content-type": "application/grpc", "te": "trailers"},
            )
    except (httpx.HTTPError, ssl.SSLError, ValueError) as e:
        raise PreflightError(f"{what}: the server does not answer gRPC ({e})") from e
    status = response.headers.get("grpc-status", "0")
    if response.status_code != 200 or status != "0":
        detail = response.headers.get("grpc-message") or f"HTTP {response.status_code}"
        raise PreflightError(f"{what}: {detail}")
    try:
        ready = model_ready_response(response.content)
    except ValueError as e:
        raise PreflightError(f"{what}: {e}") from e
    if not ready:
        raise PreflightError(f"{what}: the model is unknown or not loaded")


def _string_field(number: int, value: str) -> bytes:
    data = value.encode()
    return bytes([number << 3 | 2]) + _varint(len(data)) + data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@dataclass(frozen=True)
class NetworkPreflight:
    """The checks against the real servers (``reconcile.preflight.Preflight``)."""

    broker_timeout_s: float = 5.0

    def broker(self, service_url: str) -> None:
        check_broker(service_url, self.broker_timeout_s)

    def model(self, check: ModelCheck) -> None:
        check_model(check)
