"""perf_analyzer from the ``tritonclient`` 2.48 wheel (the last wheel that ships it), made to run
here: its two missing shared libraries come from Debian's ``libb64-0d`` and PyPI's
``nvidia-cuda-runtime-cu12`` (the binary links libcudart but needs no GPU for gRPC runs).
Everything lands once in ``$STREAMVANE_CACHE/tools/perf_analyzer/<version>``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from streamvane_worker.inference import paths

VERSION = "2.48.0"
CUDART_VERSION = "12.4.127"


class PerfAnalyzerUnavailable(Exception):
    """perf_analyzer could not be fetched or does not run on this machine."""


@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    lib_dir: Path

    def run(
        self,
        url: str,
        model: str,
        samples: list[dict[str, object]],
        batch: int,
        concurrency: int,
    ) -> float:
        """Inferences (rows) per second for ``batch``-sized requests made of the given input
        rows (perf_analyzer's ``--input-data`` samples: ``token_samples``, ``float_samples``)."""
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data.json"
            data.write_text(json.dumps({"data": samples}))
            report = Path(tmp) / "report.csv"
            result = subprocess.run(
                [
                    str(self.binary),
                    "-m",
                    model,
                    "-u",
                    url,
                    "-i",
                    "grpc",
                    "-b",
                    str(batch),
                    f"--concurrency-range={concurrency}",
                    f"--input-data={data}",
                    "--measurement-mode=count_windows",
                    "--measurement-request-count=40",
                    # Accept any three windows: on a shared 2-core machine perf_analyzer's
                    # stability check often never settles; repetitions and medians smooth.
                    "--stability-percentage=1000",
                    "--max-trials=3",
                    "-f",
                    str(report),
                ],
                env={**os.environ, "LD_LIBRARY_PATH": str(self.lib_dir)},
                capture_output=True,
                text=True,
                timeout=300,
            )
            if not report.exists():
                raise PerfAnalyzerUnavailable(
                    f"perf_analyzer failed: {(result.stdout + result.stderr)[-500:]}"
                )
            with report.open() as f:
                return float(next(csv.DictReader(f))["Inferences/Second"])


def token_samples(rows: list[list[int]]) -> list[dict[str, object]]:
    """The embedding model's inputs, one sample per token row."""
    return [
        {
            "input_ids": {"content": row, "shape": [len(row)]},
            "attention_mask": {"content": [1 if t else 0 for t in row], "shape": [len(row)]},
        }
        for row in rows
    ]


def float_samples(rows: dict[str, list[list[float]]]) -> list[dict[str, object]]:
    """One sample per row of each named FP32 input (all inputs have as many rows)."""
    count = len(next(iter(rows.values())))
    return [
        {name: {"content": values[i], "shape": [len(values[i])]} for name, values in rows.items()}
        for i in range(count)
    ]


def ensure() -> PerfAnalyzer:
    """The cached perf_analyzer, fetched on first use; raises PerfAnalyzerUnavailable."""
    home = paths.cache_dir() / "tools" / "perf_analyzer" / VERSION
    tool = PerfAnalyzer(home / "perf_analyzer", home / "lib")
    if not tool.binary.exists():
        _fetch(home)
    check = subprocess.run(
        [str(tool.binary), "--help"],
        env={**os.environ, "LD_LIBRARY_PATH": str(tool.lib_dir)},
        capture_output=True,
        text=True,
    )
    if "error while loading shared libraries" in check.stderr:
        raise PerfAnalyzerUnavailable(check.stderr.strip())
    return tool


def _fetch(home: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _pip_download(f"tritonclient=={VERSION}", "manylinux1_x86_64", work)
        _pip_download(f"nvidia-cuda-runtime-cu12=={CUDART_VERSION}", "manylinux2014_x86_64", work)
        try:
            subprocess.run(
                ["apt-get", "download", "libb64-0d"], cwd=work, check=True, capture_output=True
            )
            deb = next(work.glob("libb64-0d_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "deb")], check=True)
        except (OSError, subprocess.CalledProcessError, StopIteration) as e:
            raise PerfAnalyzerUnavailable(f"cannot fetch libb64-0d with apt-get: {e}") from e
        lib = home / "lib"
        lib.mkdir(parents=True, exist_ok=True)
        for so in (work / "deb" / "usr" / "lib" / "x86_64-linux-gnu").glob("libb64.so*"):
            shutil.copy2(so, lib)
        _extract(next(work.glob("nvidia_cuda_runtime_cu12-*.whl")), "libcudart.so.12", lib)
        _extract(next(work.glob("tritonclient-*.whl")), "bin/perf_analyzer", home)
        (home / "perf_analyzer").chmod(0o755)


def _pip_download(requirement: str, platform: str, dest: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            requirement,
            "--no-deps",
            "--only-binary=:all:",
            f"--platform={platform}",
            "--python-version=3.11",
            "-d",
            str(dest),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise PerfAnalyzerUnavailable(f"pip download {requirement} failed: {result.stderr[-300:]}")


def _extract(wheel: Path, suffix: str, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(suffix))
        (dest / Path(suffix).name).write_bytes(archive.read(member))
