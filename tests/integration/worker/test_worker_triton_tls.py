"""Workers reach a Triton whose gRPC endpoint only speaks TLS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulsar
import pytest

from .pipeline import Collector, Topics, WorkerProcess, items, publish, worker_config

pytestmark = pytest.mark.integration


def _tls_address(tls_triton: Any) -> str:
    return f"127.0.0.1:{tls_triton.settings.triton_grpc_port}"


def test_worker_embeds_through_tls_triton_when_given_its_ca(
    stack: Any,
    tls_triton: Any,
    pulsar_client: pulsar.Client,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    topics = Topics.unique("it-tls")
    inference = {
        "tritonUrl": _tls_address(tls_triton),
        "tls": True,
        "tlsCaFile": str(tls_triton.tls.ca_cert),
    }
    collector = Collector(pulsar_client, topics.output)
    worker = WorkerProcess(worker_config(stack, topics, inference=inference), tmp_path).start()
    workers.append(worker)
    worker.wait_started()
    sent = publish(pulsar_client, topics.input, items(200))
    messages = collector.until(sent, timeout=60)
    assert sorted(collector.ids()) == sorted(f"item-{i}" for i in range(sent))
    assert len(json.loads(messages[0].data())["embedding"]["vector"]) == 384
    assert worker.terminate() == 0


@pytest.mark.parametrize(
    ("inference", "named"),
    [
        ({"tls": False}, "model backend triton (127.0.0.1:"),
        ({"tls": True}, "CERTIFICATE_VERIFY_FAILED"),  # system roots do not know the local CA
        ({"tls": True, "tlsCaFile": "/no/such/ca.crt"}, "/no/such/ca.crt is not a file"),
    ],
    ids=["plaintext-to-tls-server", "untrusted-ca", "missing-ca-file"],
)
def test_worker_exits_naming_triton_when_tls_settings_do_not_match_the_server(
    stack: Any,
    tls_triton: Any,
    workers: list[WorkerProcess],
    tmp_path: Path,
    inference: dict[str, Any],
    named: str,
) -> None:
    config = worker_config(
        stack,
        Topics.unique("it-tls-bad"),
        startupTimeoutS=3,
        inference={"tritonUrl": _tls_address(tls_triton), **inference},
    )
    worker = WorkerProcess(config, tmp_path).start()
    workers.append(worker)
    error = worker.startup_error()
    assert named in error, error
