from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulsar
import pytest

from .pipeline import WorkerProcess, client


@pytest.fixture
def pulsar_client(stack: Any) -> Iterator[pulsar.Client]:
    c = client(stack)
    yield c
    c.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Worker processes a test started; killed at the end if still running."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()
