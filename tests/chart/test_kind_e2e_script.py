"""`make kind-e2e` skips cleanly (exit 0, a SKIPPED line) where no Docker engine answers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tools.chart import REPO


def test_kind_e2e_skips_with_a_message_when_docker_info_fails(tmp_path: Path) -> None:
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}
    result = subprocess.run(
        [str(REPO / "e2e" / "tools" / "kind-e2e.sh")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("SKIPPED: ")
