"""Pure translation of a Deployment's pod template into what one local process needs."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PYTHONS = frozenset({"python", "python3"})
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096
"""Kubelet keeps at most this many bytes of a termination message."""
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
"""FallbackToLogsOnError: kubelet's message is the log's last 80 lines, at most 2 KiB."""


class UnsupportedTemplate(ValueError):
    """The pod template uses something the runner cannot imitate."""


@dataclass(frozen=True)
class HttpProbe:
    path: str
    port: int | str
    """Container port number or name, as in the template."""
    period_s: float
    failure_threshold: int
    initial_delay_s: float


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str


@dataclass(frozen=True)
class Container:
    name: str
    argv: tuple[str, ...]
    env: tuple[dict[str, Any], ...]
    env_from: tuple[dict[str, Any], ...]
    mounts: tuple[Mount, ...]
    ports: dict[str, int]
    """Port name -> containerPort."""
    readiness: HttpProbe | None
    liveness: HttpProbe | None
    startup: HttpProbe | None
    image: str = ""
    termination_message_path: str = DEFAULT_TERMINATION_MESSAGE_PATH
    """Where the container may leave a message that its status shows after it ends."""
    termination_message_policy: str = "File"


@dataclass(frozen=True)
class PodPlan:
    container: Container
    volumes: dict[str, dict[str, Any]]
    """Volume name -> its source (``configMap``, ``secret`` or ``emptyDir``)."""
    grace_s: float


def template_hash(template: dict[str, Any]) -> str:
    """Stable identity of a pod template: a change means a rolling update."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def plan_pod(template: dict[str, Any]) -> PodPlan:
    spec = template.get("spec") or {}
    containers = spec.get("containers") or []
    if len(containers) != 1:
        raise UnsupportedTemplate(f"exactly one container is supported, found {len(containers)}")
    raw = containers[0]
    argv = (*raw.get("command", []), *raw.get("args", []))
    if not argv:
        raise UnsupportedTemplate(
            "the container has no command (images' entrypoints are unknown here)"
        )
    volumes = {}
    for volume in spec.get("volumes") or []:
        kinds = [k for k in ("configMap", "secret", "emptyDir") if k in volume]
        if not kinds:
            raise UnsupportedTemplate(
                f"volume {volume['name']!r}: only configMap, secret, emptyDir"
            )
        volumes[volume["name"]] = volume
    container = Container(
        name=raw["name"],
        argv=tuple(str(a) for a in argv),
        env=tuple(raw.get("env") or ()),
        env_from=tuple(raw.get("envFrom") or ()),
        mounts=tuple(Mount(m["name"], m["mountPath"]) for m in raw.get("volumeMounts") or ()),
        ports={
            p.get("name", str(p["containerPort"])): int(p["containerPort"])
            for p in raw.get("ports") or ()
        },
        readiness=_probe(raw.get("readinessProbe")),
        liveness=_probe(raw.get("livenessProbe")),
        startup=_probe(raw.get("startupProbe")),
        image=str(raw.get("image") or ""),
        termination_message_path=raw.get("terminationMessagePath")
        or DEFAULT_TERMINATION_MESSAGE_PATH,
        termination_message_policy=raw.get("terminationMessagePolicy") or "File",
    )
    return PodPlan(container, volumes, float(spec.get("terminationGracePeriodSeconds", 30)))


def _probe(raw: dict[str, Any] | None) -> HttpProbe | None:
    if not raw:
        return None
    if "httpGet" not in raw:
        raise UnsupportedTemplate("only httpGet probes are supported")
    get = raw["httpGet"]
    return HttpProbe(
        path=get.get("path", "/"),
        port=get["port"],
        period_s=float(raw.get("periodSeconds", 10)),
        failure_threshold=int(raw.get("failureThreshold", 3)),
        initial_delay_s=float(raw.get("initialDelaySeconds", 0)),
    )


def local_path(value: str, mounts: dict[str, Path]) -> str:
    """A container path under a mount, as the path of its local stand-in directory."""
    for mount_path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            return str(local / value[len(mount_path) :].lstrip("/"))
    return value


def local_json(content: bytes, mounts: dict[str, Path]) -> bytes:
    """A JSON config file whose string values under a mount path point at the stand-in
    directories (a worker config names its mounted Secrets by container path)."""

    def localize(value: Any) -> Any:
        if isinstance(value, str):
            return local_path(value, mounts)
        if isinstance(value, list):
            return [localize(v) for v in value]
        if isinstance(value, dict):
            return {k: localize(v) for k, v in value.items()}
        return value

    return json.dumps(localize(json.loads(content)), indent=2).encode()


def local_argv(argv: tuple[str, ...], mounts: dict[str, Path], env: Mapping[str, str]) -> list[str]:
    """``python`` is this interpreter (the images' Python is this virtualenv here);
    ``$(VAR)`` references are expanded from the container env, as kubelet does."""
    first = sys.executable if argv[0] in PYTHONS else argv[0]
    return [first, *(local_path(expand_env_refs(a, env), mounts) for a in argv[1:])]


_ENV_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand_env_refs(arg: str, env: Mapping[str, str]) -> str:
    """Kubernetes' rule: ``$(NAME)`` becomes NAME's value when defined, else stays as written;
    ``$$`` escapes a dollar."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return _ENV_REF.sub(replace, arg)


@dataclass(frozen=True)
class Terminated:
    """A container run that ended, as kubelet reports it in ``lastState.terminated``."""

    exit_code: int
    message: str
    started_at: str
    finished_at: str

    def as_state(self) -> dict[str, Any]:
        return {
            "terminated": {
                "exitCode": self.exit_code,
                "reason": "Completed" if self.exit_code == 0 else "Error",
                "message": self.message,
                "startedAt": self.started_at,
                "finishedAt": self.finished_at,
            }
        }


@dataclass(frozen=True)
class ContainerRun:
    """What the runner knows of one pod's container now."""

    running_since: str | None
    """None: not running (waiting to be restarted)."""
    ready: bool
    started: bool
    restarts: int
    last: Terminated | None
    backoff_s: float = 0.0
    """How long a waiting container waits before its restart."""


def termination_message(written: bytes, log_tail: bytes, exit_code: int, policy: str | None) -> str:
    """Kubelet's rule: the file's content; with FallbackToLogsOnError and an empty file after
    a failure, the end of the container's log instead."""
    if not written.strip() and exit_code != 0 and policy == "FallbackToLogsOnError":
        lines = log_tail.splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
        written = b"".join(lines)[-FALLBACK_LOG_BYTES:]
    return written[:TERMINATION_MESSAGE_LIMIT].decode(errors="replace")


def pod_object(
    deployment: dict[str, Any], name: str, template: dict[str, Any], node: str
) -> dict[str, Any]:
    """The Pod a ReplicaSet would create for ``deployment``, bound to ``node``."""
    meta = deployment["metadata"]
    template_meta = template.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": dict(template_meta.get("labels") or {}),
            "annotations": dict(template_meta.get("annotations") or {}),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {**(template.get("spec") or {}), "nodeName": node},
    }


def pod_status(container: Container, image: str, run: ContainerRun) -> dict[str, Any]:
    """``status`` of a Pod whose single container is in ``run`` (restartPolicy Always: the
    phase stays Running while kubelet restarts a crashed container)."""
    state: dict[str, Any]
    if run.running_since is not None:
        state = {"running": {"startedAt": run.running_since}}
    else:
        state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {run.backoff_s:.0f}s restarting failed container="
                f"{container.name}",
            }
        }
    ready = "True" if run.ready else "False"
    return {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": ready},
            {"type": "Ready", "status": ready},
        ],
        "containerStatuses": [
            {
                "name": container.name,
                "image": image,
                "imageID": "",
                "ready": run.ready,
                "started": run.started and run.running_since is not None,
                "restartCount": run.restarts,
                "state": state,
                "lastState": run.last.as_state() if run.last else {},
            }
        ],
    }
