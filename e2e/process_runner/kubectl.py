"""kubectl against the local stack, retried while API discovery lags behind a new CRD."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

DISCOVERY_LAG = (
    "no matches for kind",
    "could not find the requested resource",
    "the server doesn't have a resource type",
)


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        result = subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            timeout=timeout_s,
        )
        lagging = any(lag in result.stderr for lag in DISCOVERY_LAG)
        if not lagging or time.monotonic() > deadline:
            return result
        time.sleep(0.5)
