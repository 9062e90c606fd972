"""Start the operator and the process runner as real subprocesses (e2e tests, the demo)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

E2E_DIR = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@dataclass
class Background:
    """A subprocess whose output goes to ``log``; stop() is SIGTERM then SIGKILL."""

    argv: Sequence[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _out: IO[bytes] | None = None

    def start(self) -> Background:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.log.open("ab")
        self.process = subprocess.Popen(
            list(self.argv),
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 20) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; the exit code (None if it never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self._closed()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._closed()

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _closed(self) -> int | None:
        if self._out is not None:
            self._out.close()
            self._out = None
        return self.process.returncode if self.process else None


def operator(
    kubeconfig: Path,
    namespaces: Sequence[str],
    log: Path,
    *,
    resync_s: float = 5,
    retry_s: float = 2,
    autoscale_s: float = 2,
    model_serving_s: float = 2,
    extra_args: Sequence[str] = (),
) -> Background:
    """``python -m streamvane_operator`` watching ``namespaces`` of the local stack."""
    argv = [
        sys.executable,
        "-m",
        "streamvane_operator",
        f"--kubeconfig={kubeconfig}",
        f"--resync-seconds={resync_s}",
        f"--retry-seconds={retry_s}",
        f"--autoscale-interval-seconds={autoscale_s}",
        f"--model-serving-seconds={model_serving_s}",
        "--worker-log-format=console",
        "--log-format=plain",
        *(f"--namespace={ns}" for ns in namespaces),
        *extra_args,
    ]
    return Background(argv, log)


def runner(
    kubeconfig: Path,
    namespaces: Sequence[str],
    log: Path,
    log_dir: Path,
    *,
    selector: str | None = None,
    port_env: str | None = None,
    max_grace_s: float = 15,
) -> Background:
    """``python -m process_runner`` for ``namespaces`` (replica logs under ``log_dir``)."""
    argv = [
        sys.executable,
        "-m",
        "process_runner",
        f"--kubeconfig={kubeconfig}",
        f"--log-dir={log_dir}",
        f"--max-grace-seconds={max_grace_s}",
        *(f"--namespace={ns}" for ns in namespaces),
        *([f"--selector={selector}"] if selector else []),
        *([f"--port-env={port_env}"] if port_env else []),
    ]
    pythonpath = os.pathsep.join(filter(None, [str(E2E_DIR), os.environ.get("PYTHONPATH")]))
    return Background(argv, log, env={"PYTHONPATH": pythonpath})


def wait_for(what: str, check: Callable[[], T], timeout_s: float, interval_s: float = 0.5) -> T:
    """Poll ``check()`` until it returns something truthy; AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")
