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
