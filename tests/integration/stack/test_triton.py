"""The bundled tritonserver is real: it is live, serves the model repository and reports metrics."""

from __future__ import annotations

import httpx
import tritonclient.grpc as grpcclient

from streamvane_stack import Endpoints
from streamvane_stack.stack import Triton


def test_triton_serves_every_model_in_repository_when_started(stack: Endpoints) -> None:
    client = grpcclient.InferenceServerClient(stack.triton_grpc)
    assert client.is_server_live() and client.is_server_ready()
    served = {m.name for m in client.get_model_repository_index().models if m.state == "READY"}
    on_disk = {p.name for p in stack.model_repository.iterdir() if (p / "config.pbtxt").exists()}
    assert on_disk and served == on_disk


def test_triton_exports_prometheus_metrics_when_scraped(stack: Endpoints) -> None:
    metrics = httpx.get(stack.triton_metrics_url, timeout=5.0).text
    assert "nv_inference_request_success" in metrics


def test_private_triton_comes_back_when_restarted(private_triton: Triton) -> None:
    url = f"127.0.0.1:{private_triton.settings.triton_grpc_port}"
    assert grpcclient.InferenceServerClient(url).is_server_ready()

    private_triton.daemon.stop()
    assert not private_triton.probe()
    private_triton.start()
    private_triton.wait_ready(lambda _: None)

    assert grpcclient.InferenceServerClient(url).is_server_ready()
