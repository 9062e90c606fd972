"""The bundled tritonserver is real: it is live, serves the model repository and reports metrics."""

from __future__ import annotations

import httpx
import tritonclient.grpc as grpcclient

from streamvane_stack import Endpoints


def test_triton_serves_every_model_in_repository_when_started(stack: Endpoints) -> None:
    client = grpcclient.InferenceServerClient(stack.triton_grpc)
    assert client.is_server_live() and client.is_server_ready()
    served = {m.name for m in client.get_model_repository_index().models if m.state == "READY"}
    on_disk = {p.name for p in stack.model_repository.iterdir() if (p / "config.pbtxt").exists()}
    assert on_disk and served == on_disk


def test_triton_exports_prometheus_metrics_when_scraped(stack: Endpoints) -> None:
    metrics = httpx.get(stack.triton_metrics_url, timeout=5.0).text
    assert "nv_inference_request_success" in metrics
