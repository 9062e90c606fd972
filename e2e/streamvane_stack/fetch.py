"""Fetch and build the stack's heavy artifacts into the cache, once per version."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def _exclusive(directory: Path, report: Report) -> Iterator[None]:
    """Held while fetching or building into ``directory``: stacks started side by side wait
    for one build instead of each running their own over the same files."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report(f"{directory}: another stack is fetching or building it; waiting")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pulsar_home(cache: Path, version: str, report: Report) -> Path:
    """The unpacked Pulsar binary distribution, fetched from Maven Central with Maven."""
    base = cache / "pulsar" / version
    home = base / f"apache-pulsar-{version}"
    if (home / "bin" / "pulsar").exists():
        return home
    with _exclusive(base, report):
        if not (home / "bin" / "pulsar").exists():
            _fetch_pulsar(base, version, report)
    return home


def _fetch_pulsar(base: Path, version: str, report: Report) -> None:
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


def kube_binary(cache: Path, name: str, version: str, report: Report) -> Path:
    """A Kubernetes command (e.g. kube-apiserver) built from the Go module proxy, once."""
    binary = cache / name / version / name
    if binary.exists():
        return binary
    require_tool("go", "install Go >= 1.23 (https://go.dev/dl or Debian golang)")
    with _exclusive(binary.parent, report):
        if not binary.exists():
            report(
                f"{name} {version}: building from the Go module proxy (5-10 min on 2 cores, once)"
            )
            script = Path(__file__).resolve().parent.parent / "stack" / "build-kube-binary.sh"
            subprocess.run(["bash", str(script), name, version, str(binary)], check=True)
    return binary


def etcd_binary() -> str:
    return require_tool("etcd", "install etcd (Debian: apt-get install etcd-server)")
