"""`streamvane embed` gives the same vectors in-process and through the real Triton (plain or TLS)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.integration

TEXTS = "a cat sits on the mat\nthe stock market fell sharply today\n\n"


def _embed(*args: str) -> np.ndarray:
    result = subprocess.run(
        [sys.executable, "-c", "from streamvane_worker.cli import app; app()", "embed", *args],
        input=TEXTS,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return np.array([json.loads(line) for line in result.stdout.splitlines()])


def test_embed_matches_in_process_when_going_through_triton(stack: Any) -> None:
    local = _embed()
    remote = _embed("--triton", stack.triton_grpc)
    assert local.shape == remote.shape == (3, 384)
    assert np.allclose(local, remote, atol=1e-4)
    assert np.allclose(np.linalg.norm(remote, axis=1), 1.0, atol=1e-4)


def test_embed_over_tls_matches_in_process_when_trusting_the_servers_ca(tls_triton: Any) -> None:
    address = f"127.0.0.1:{tls_triton.settings.triton_grpc_port}"
    remote = _embed("--triton", address, "--triton-ca", str(tls_triton.tls.ca_cert))
    assert np.allclose(_embed(), remote, atol=1e-4)
