"""A worker that cannot reach its dependencies exits with a message naming the problem."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from .pipeline import Topics, WorkerProcess, worker_config

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"inference": {"modelName": "no-such-model"}}, "'no-such-model' is not served by Triton"),
        ({"inference": {"tritonUrl": f"127.0.0.1:{_closed_port()}"}}, "model backend triton"),
        ({"pulsar": {"serviceUrl": f"pulsar://127.0.0.1:{_closed_port()}"}}, "Pulsar at pulsar://"),
    ],
    ids=["wrong-model", "triton-unreachable", "pulsar-unreachable"],
)
def test_worker_exits_naming_the_problem_when_a_dependency_is_wrong(
    stack: Any, tmp_path: Path, workers: list[WorkerProcess], overrides: dict[str, Any], named: str
) -> None:
    config = worker_config(stack, Topics.unique("it-startup"), startupTimeoutS=3, **overrides)
    worker = WorkerProcess(config, tmp_path).start()
    workers.append(worker)
    error = worker.startup_error()
    assert named in error, error
