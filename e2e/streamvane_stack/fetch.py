"""Fetch and build the stack's heavy artifacts into the cache, once per version."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

Report = Callable[[str], None]
"""Progress callback: one human-readable line per step."""


class MissingTool(RuntimeError):
    """A tool the stack needs is not installed; the message says what to install."""


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingTool(f"'{name}' not found on PATH: {hint}")
    return path


def pulsar_home(cache: Path, version: str, report: Report) -> Path:
    """The unpacked Pulsar binary distribution, fetched from Maven Central with Maven."""
    base = cache / "pulsar" / version
    home = base / f"apache-pulsar-{version}"
    if (home / "bin" / "pulsar").exists():
        return home
    require_tool(
        "java", "install a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless)"
    )
    mvn = require_tool("mvn", "install Maven (Debian: apt-get install maven)")
    archive = base / f"pulsar-server-distribution-{version}-bin.tar.gz"
    if not archive.exists():
        report(
            f"pulsar {version}: downloading the binary distribution from Maven Central (~250 MB)"
        )
        base.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                mvn, "-q", "-B",
                "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
                f"-Dartifact=org.apache.pulsar:pulsar-server-distribution:{version}:tar.gz:bin",
                f"-DoutputDirectory={base}",
            ],
            check=True,
        )  # fmt: skip
    report(f"pulsar {version}: unpacking")
    with tarfile.open(archive) as tar:
        tar.extractall(base, filter="tar")
    return home


def kube_binary(cache: Path, name: str, version: str, report: Report) -> Path:
    """A Kubernetes command (e.g. kube-apiserver) built from the Go module proxy, once."""
    binary = cache / name / version / name
    if binary.exists():
        return binary
    require_tool("go", "install Go >= 1.23 (https://go.dev/dl or Debian golang)")
    report(f"{name} {version}: building from the Go module proxy (5-10 min on 2 cores, once)")
    script = Path(__file__).resolve().parent.parent / "stack" / "build-kube-binary.sh"
    subprocess.run(["bash", str(script), name, version, str(binary)], check=True)
    return binary


def etcd_binary() -> str:
    return require_tool("etcd", "install etcd (Debian: apt-get install etcd-server)")
