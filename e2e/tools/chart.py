"""The Helm chart as tests and scripts use it: pinned tools, `helm template`, the CI values files."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "streamvane"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
"""Values files every check runs against (lint, kubeconform, server dry-run)."""
DASHBOARD = CHART / "dashboards" / "streamvane-pipelines.json"

Manifest = dict[str, Any]


@cache
def tool(name: str) -> Path:
    """Path of a pinned Go tool (helm, kubeconform, kind), built into the cache on first use."""
    result = subprocess.run(
        [str(REPO / "e2e" / "tools" / "tool.sh"), name],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(result.stdout.strip().splitlines()[-1])


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr."""


def run_helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(tool("helm")), *args]
    if kubeconfig is not None:
        command += ["--kubeconfig", str(kubeconfig)]
    return subprocess.run(command, capture_output=True, text=True)


def helm(*args: str, kubeconfig: Path | None = None) -> str:
    """Run helm and return its stdout."""
    result = run_helm(*args, kubeconfig=kubeconfig)
    if result.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result.stdout


def template(
    values: Path | None = None,
    *,
    sets: Sequence[str] = (),
    namespace: str = "streamvane-system",
    release: str = "streamvane",
    include_crds: bool = False,
) -> str:
    """`helm template` of the chart as one multi-document YAML string."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    if values is not None:
        args += ["--values", str(values)]
    for assignment in sets:
        args += ["--set", assignment]
    if include_crds:
        args.append("--include-crds")
    return helm(*args)


def manifests(rendered: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def render(values: Path | None = None, **kwargs: Any) -> list[Manifest]:
    """`helm template`, parsed into a list of objects."""
    return manifests(template(values, **kwargs))


def of_kind(objects: Sequence[Manifest], kind: str) -> list[Manifest]:
    return [obj for obj in objects if obj["kind"] == kind]
