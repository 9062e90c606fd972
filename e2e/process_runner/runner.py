"""The loop: Deployments in, local processes out, Deployment and Pod status back.

For tests and the demo only (see the package docstring). Each replica is a process group
started with the container's command and env, its ConfigMap/Secret volumes written to a
temporary directory, and its own free port in ``port_env`` so replicas on one host do not
collide; its readiness probe is polled over HTTP on that port.

Each replica is also a Pod object, as a ReplicaSet and kubelet would keep it: a crashed
container is restarted in the same Pod after a back-off (restartCount, ``waiting:
CrashLoopBackOff``, ``lastState.terminated`` with the exit code and the termination message
the process left in the file named by ``termination_message_env``).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import structlog
from kubernetes import client as k8s

from process_runner.pod import (
    ContainerRun,
    HttpProbe,
    PodPlan,
    Terminated,
    UnsupportedTemplate,
    local_argv,
    local_json,
    local_path,
    plan_pod,
    pod_object,
    pod_status,
    template_hash,
    termination_message,
)

log = structlog.get_logger("process_runner")

PR_SET_PDEATHSIG = 1
MESSAGE_FILE = "termination-log"
"""In a replica's directory: stands in for its container's terminationMessagePath."""
Key = tuple[str, str, str]
"""(namespace, name, uid): a Deployment deleted and re-created under its name is a new one."""


@dataclass(frozen=True)
class RunnerConfig:
    selector: str
    """Label selector of the Deployments to run."""
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty means all."""
    port_env: str = "STREAMVANE_WORKER_HEALTH_PORT"
    """Env var that receives each replica's own port (its probes go there)."""
    log_dir: Path = Path(tempfile.gettempdir()) / "process-runner"
    """One log file per replica."""
    poll_s: float = 0.5
    """How often Deployments are listed and probes are due-checked."""
    max_probe_period_s: float = 1.0
    """Probe periods are capped so tests do not wait for production-sized periods."""
    max_grace_s: float = 10.0
    """SIGKILL after min(terminationGracePeriodSeconds, this)."""
    max_restart_backoff_s: float = 10.0
    termination_message_env: str = "STREAMVANE_TERMINATION_MESSAGE_PATH"
    """Env var naming the local file that stands in for the container's
    terminationMessagePath (any env value equal to that path is mapped to it too)."""
    node_name: str = "process-runner"
    """``spec.nodeName`` of the Pods the runner reports."""


@dataclass
class Replica:
    key: Key
    pod: str
    template: str
    plan: PodPlan
    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    started_at: float
    ready: bool = False
    started: bool = False
    """The startup probe passed (or there is none); liveness counts from then on."""
    live_failures: int = 0
    ready_failures: int = 0
    next_probe_at: float = 0.0
    stopping_since: float | None = None
    log_file: Any = None
    restarts: int = 0
    last: Terminated | None = None
    """How the previous container of this Pod ended."""
    started_wall: str = ""
    restarting: bool = False
    """Stopped by a failed probe: kubelet restarts the container in the same Pod."""

    @property
    def message_file(self) -> Path:
        return self.workdir / MESSAGE_FILE


@dataclass
class CrashedPod:
    """A Pod whose container ended and waits for its restart (CrashLoopBackOff)."""

    key: Key
    pod: str
    template: str
    plan: PodPlan
    restarts: int
    last: Terminated
    backoff_s: float


@dataclass
class Crashes:
    count: int = 0
    retry_at: float = 0.0


@dataclass
class Runner:
    config: RunnerConfig
    apps: k8s.AppsV1Api
    core: k8s.CoreV1Api
    replicas: list[Replica] = field(default_factory=list)
    crashes: dict[Key, Crashes] = field(default_factory=dict)
    written: dict[Key, dict[str, Any]] = field(default_factory=dict)
    crashed: list[CrashedPod] = field(default_factory=list)
    pods: dict[tuple[Key, str], dict[str, Any]] = field(default_factory=dict)
    """Pods created, by (Deployment, Pod name) -> the status last written."""
    clock: Callable[[], float] = time.monotonic

    def run(self, stop: threading.Event) -> None:
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        log.info("runner_started", selector=self.config.selector, namespaces=self.config.namespaces)
        try:
            while not stop.is_set():
                try:
                    self.sync()
                except (k8s.ApiException, OSError) as e:
                    log.warning("sync_failed", error=str(e))
                stop.wait(self.config.poll_s)
        finally:
            self.shutdown()

    def sync(self) -> None:
        deployments = {_key(d): d for d in self._list()}
        self._reap()
        for key, deployment in deployments.items():
            self._reconcile(key, deployment)
        for replica in self.replicas:
            if replica.key not in deployments:
                self._stop(replica, "deployment deleted")
        self._probe_all()
        self.crashed = [c for c in self.crashed if c.key in deployments]
        for key, deployment in deployments.items():
            self._write_status(key, deployment)
            self._write_pods(key, deployment)
        for cache in (self.written, self.crashes):
            for key in [k for k in cache if k not in deployments]:
                del cache[key]
        for pod_key in [k for k in self.pods if k[0] not in deployments]:
            self._delete_pod(*pod_key)

    def shutdown(self) -> None:
        for replica in self.replicas:
            self._stop(replica, "runner exiting")
        deadline = self.clock() + self.config.max_grace_s
        while self.replicas and self.clock() < deadline:
            self._reap()
            time.sleep(0.1)
        for replica in list(self.replicas):
            _signal(replica, signal.SIGKILL)
            replica.process.wait()
            self._forget(replica)
        for pod_key in list(self.pods):
            with contextlib.suppress(k8s.ApiException):
                self._delete_pod(*pod_key)
        log.info("runner_stopped")

    # desired state

    def _reconcile(self, key: Key, deployment: dict[str, Any]) -> None:
        template = deployment["spec"]["template"]
        current_hash = template_hash(template)
        desired = int(deployment["spec"].get("replicas", 1))
        live = [r for r in self.replicas if r.key == key and r.stopping_since is None]
        current = [r for r in live if r.template == current_hash]
        old = [r for r in live if r.template != current_hash]
        crashes = self.crashes.get(key, Crashes())
        # A crashed Pod of an old template is replaced, not restarted; beyond the desired
        # count it goes (scale-down).
        waiting = [c for c in self.crashed if c.key == key and c.template == current_hash]
        keep = waiting[: max(0, desired - len(current))]
        self.crashed = [c for c in self.crashed if c.key != key or c in keep]
        if recreate(deployment) and old:
            # Recreate: every old replica goes first; new ones start once none is left.
            for replica in old:
                self._stop(replica, "replaced by a new template (Recreate)")
            return
        stopping_old = any(
            r.key == key and r.stopping_since is not None and r.template != current_hash
            for r in self.replicas
        )
        if recreate(deployment) and stopping_old:
            return
        if len(current) < desired and self.clock() >= crashes.retry_at:
            try:
                plan = plan_pod(template)
            except UnsupportedTemplate as e:
                log.error("unsupported_template", deployment=f"{key[0]}/{key[1]}", error=str(e))
                return
            for i in range(desired - len(current)):
                restart = keep[i] if i < len(keep) else None
                if restart is not None:
                    self.crashed.remove(restart)
                self.replicas.append(self._start(key, current_hash, plan, restart))
        for replica in _not_ready_first(current)[: max(0, len(current) - desired)]:
            self._stop(replica, "scaled down")
        # Rolling: an old replica stops only once a new one is ready to take its place.
        ready_current = sum(r.ready for r in current)
        keep_old = max(0, desired - ready_current)
        for replica in _not_ready_first(old)[: max(0, len(old) - keep_old)]:
            self._stop(replica, "replaced by a new template")

    # processes

    def _start(self, key: Key, template: str, plan: PodPlan, restart: CrashedPod | None) -> Replica:
        """A new Pod's first container, or the next container of ``restart``'s Pod."""
        namespace, name, _ = key
        pod = restart.pod if restart else f"{name}-{template[:10]}-{secrets.token_hex(3)}"
        workdir = Path(tempfile.mkdtemp(prefix=f"{pod}-"))
        mounts = self._materialize(namespace, plan, workdir)
        message_file = workdir / MESSAGE_FILE
        message_file.touch()  # kubelet creates it before the container starts
        mounts[plan.container.termination_message_path] = message_file
        port = _free_port()
        env = {
            **os.environ,
            **self._env(namespace, pod, plan, mounts),
            self.config.port_env: str(port),
            self.config.termination_message_env: str(message_file),
        }
        argv = local_argv(plan.container.argv, mounts, env)
        log_file = (self.config.log_dir / f"{namespace}_{pod}.log").open("ab")
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.info("replica_started", pod=pod, namespace=namespace, pid=process.pid, port=port)
        now = self.clock()
        return Replica(
            key=key,
            pod=pod,
            template=template,
            plan=plan,
            process=process,
            port=port,
            workdir=workdir,
            started_at=now,
            started=plan.container.startup is None,
            next_probe_at=now,
            log_file=log_file,
            restarts=restart.restarts + 1 if restart else 0,
            last=restart.last if restart else None,
            started_wall=_timestamp(),
        )

    def _stop(self, replica: Replica, reason: str) -> None:
        if replica.stopping_since is not None:
            return
        replica.stopping_since = self.clock()
        replica.ready = False
        log.info("replica_stopping", pod=replica.pod, reason=reason)
        _signal(replica, signal.SIGTERM)

    def _reap(self) -> None:
        """Forget exited processes; SIGKILL those past their grace period."""
        for replica in list(self.replicas):
            code = replica.process.poll()
            if code is None:
                grace = min(replica.plan.grace_s, self.config.max_grace_s)
                if (
                    replica.stopping_since is not None
                    and self.clock() - replica.stopping_since > grace
                ):
                    log.warning("replica_killed", pod=replica.pod, after_s=grace)
                    _signal(replica, signal.SIGKILL)
                continue
            if replica.stopping_since is None:
                crashes = self.crashes.setdefault(replica.key, Crashes())
                crashes.count += 1
                backoff = min(2.0 ** (crashes.count - 1), self.config.max_restart_backoff_s)
                crashes.retry_at = self.clock() + backoff
                log.warning("replica_exited", pod=replica.pod, code=code, restart_in_s=backoff)
                self._crashed(replica, code, backoff)
            elif replica.restarting:
                crashes = self.crashes.get(replica.key, Crashes())
                self._crashed(replica, code, max(0.0, crashes.retry_at - self.clock()))
            else:
                log.info("replica_stopped", pod=replica.pod, code=code)
            self._forget(replica)

    def _crashed(self, replica: Replica, code: int, backoff_s: float) -> None:
        """Keep the replica's Pod, waiting for its restart, with how its container ended."""
        replica.log_file.flush()
        log_path = Path(replica.log_file.name)
        message = termination_message(
            replica.message_file.read_bytes() if replica.message_file.exists() else b"",
            _tail(log_path),
            code,
            replica.plan.container.termination_message_policy,
        )
        terminated = Terminated(code, message, replica.started_wall, _timestamp())
        self.crashed.append(
            CrashedPod(
                replica.key,
                replica.pod,
                replica.template,
                replica.plan,
                replica.restarts,
                terminated,
                backoff_s,
            )
        )

    def _forget(self, replica: Replica) -> None:
        self.replicas.remove(replica)
        replica.log_file.close()
        shutil.rmtree(replica.workdir, ignore_errors=True)

    # probes

    def _probe_all(self) -> None:
        now = self.clock()
        for replica in self.replicas:
            if replica.stopping_since is not None or now < replica.next_probe_at:
                continue
            container = replica.plan.container
            if not replica.started:
                assert container.startup is not None
                if self._probe(replica, container.startup):
                    replica.started = True
                elif now - replica.started_at > _budget(container.startup, self.config):
                    self._restart(replica, "startup probe never passed")
                    continue
            if replica.started and _probing(container.liveness, now - replica.started_at):
                assert container.liveness is not None
                alive = self._probe(replica, container.liveness)
                replica.live_failures = 0 if alive else replica.live_failures + 1
                if replica.live_failures >= container.liveness.failure_threshold:
                    self._restart(replica, "liveness probe failed")
                    continue
            readiness = container.readiness
            if readiness is None:
                replica.ready = replica.started
            elif replica.started and self._probe(replica, readiness):
                replica.ready, replica.ready_failures = True, 0
            else:
                replica.ready_failures += 1
                if not replica.started or replica.ready_failures >= readiness.failure_threshold:
                    replica.ready = False
            period = min(
                (p.period_s for p in (readiness, container.liveness, container.startup) if p),
                default=self.config.max_probe_period_s,
            )
            replica.next_probe_at = now + min(period, self.config.max_probe_period_s)

    def _probe(self, replica: Replica, probe: HttpProbe) -> bool:
        if not _probing(probe, self.clock() - replica.started_at):
            return False  # kubelet reports not-ready until the first probe
        # One port per replica: whatever container port the probe names is served there.
        try:
            response = httpx.get(f"http://127.0.0.1:{replica.port}{probe.path}", timeout=1.0)
        except httpx.HTTPError:
            return False
        return 200 <= response.status_code < 400

    def _restart(self, replica: Replica, reason: str) -> None:
        # Stopping counts as a crash so the reconcile loop backs off before replacing it.
        crashes = self.crashes.setdefault(replica.key, Crashes())
        crashes.count += 1
        crashes.retry_at = self.clock() + min(2.0**crashes.count, self.config.max_restart_backoff_s)
        replica.restarting = True
        self._stop(replica, reason)

    # status

    def _write_status(self, key: Key, deployment: dict[str, Any]) -> None:
        current = template_hash(deployment["spec"]["template"])
        live = [r for r in self.replicas if r.key == key and r.stopping_since is None]
        desired = int(deployment["spec"].get("replicas", 1))
        ready = sum(r.ready for r in live)
        updated = sum(r.template == current for r in live)
        status = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": len(live),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, desired - ready),
        }
        if self.written.get(key) == status:
            return
        namespace, name, _ = key
        try:
            self.apps.patch_namespaced_deployment_status(name, namespace, {"status": status})
        except k8s.ApiException as e:
            if e.status != 404:
                raise
            return
        self.written[key] = status
        log.info("status_written", deployment=f"{namespace}/{name}", **status)

    def _write_pods(self, key: Key, deployment: dict[str, Any]) -> None:
        """Create, update and delete the Deployment's Pods as its replicas are now."""
        template = deployment["spec"]["template"]
        runs: dict[str, tuple[PodPlan, ContainerRun]] = {}
        for r in self.replicas:
            if r.key == key:
                run = ContainerRun(r.started_wall, r.ready, r.started, r.restarts, r.last)
                runs[r.pod] = (r.plan, run)
        for c in self.crashed:
            if c.key == key:
                run = ContainerRun(None, False, False, c.restarts, c.last, c.backoff_s)
                runs[c.pod] = (c.plan, run)
        for pod, (plan, run) in runs.items():
            status = pod_status(plan.container, plan.container.image, run)
            if self.pods.get((key, pod)) == status:
                continue
            if (key, pod) not in self.pods:
                body = pod_object(deployment, pod, template, self.config.node_name)
                try:
                    self.core.create_namespaced_pod(key[0], body)
                except k8s.ApiException as e:
                    if e.status != 409:
                        raise
            patch = [{"op": "add", "path": "/status", "value": status}]
            self.core.patch_namespaced_pod_status(pod, key[0], patch)
            self.pods[(key, pod)] = status
        for pod_key in [k for k in self.pods if k[0] == key and k[1] not in runs]:
            self._delete_pod(*pod_key)

    def _delete_pod(self, key: Key, pod: str) -> None:
        try:
            self.core.delete_namespaced_pod(pod, key[0], grace_period_seconds=0)
        except k8s.ApiException as e:
            if e.status != 404:
                raise
        del self.pods[(key, pod)]

    # Kubernetes reads

    def _list(self) -> list[dict[str, Any]]:
        selector = self.config.selector
        if self.config.namespaces:
            items = [
                d
                for ns in self.config.namespaces
                for d in self.apps.list_namespaced_deployment(ns, label_selector=selector).items
            ]
        else:
            items = self.apps.list_deployment_for_all_namespaces(label_selector=selector).items
        serialize = self.apps.api_client.sanitize_for_serialization
        return [serialize(d) for d in items if d.metadata.deletion_timestamp is None]

    def _materialize(self, namespace: str, plan: PodPlan, workdir: Path) -> dict[str, Path]:
        """Write each mounted volume to a local directory; mount path -> directory.

        JSON files of ConfigMaps have their container paths mapped with ``local_json``."""
        mounts = {}
        json_files: list[Path] = []
        for mount in plan.container.mounts:
            target = workdir / "volumes" / mount.volume
            target.mkdir(parents=True, exist_ok=True)
            volume = plan.volumes.get(mount.volume, {})
            files: dict[str, bytes] = {}
            if "configMap" in volume:
                source = volume["configMap"]
                data = self.core.read_namespaced_config_map(source["name"], namespace).data or {}
                files = {k: v.encode() for k, v in data.items()}
            elif "secret" in volume:
                source = volume["secret"]
                data = self.core.read_namespaced_secret(source["secretName"], namespace).data or {}
                files = {k: base64.b64decode(v) for k, v in data.items()}
            else:
                source = {}
            items = source.get("items")
            for key, content in files.items():
                paths = [i["path"] for i in items if i["key"] == key] if items else [key]
                for path in paths:
                    (target / path).parent.mkdir(parents=True, exist_ok=True)
                    (target / path).write_bytes(content)
                    if "configMap" in volume and path.endswith(".json"):
                        json_files.append(target / path)
            mounts[mount.path] = target
        for path in json_files:
            path.write_bytes(local_json(path.read_bytes(), mounts))
        return mounts

    def _env(
        self, namespace: str, pod: str, plan: PodPlan, mounts: dict[str, Path]
    ) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in plan.container.env_from:
            if "configMapRef" in source:
                data = self.core.read_namespaced_config_map(
                    source["configMapRef"]["name"], namespace
                ).data
                env.update(data or {})
            elif "secretRef" in source:
                data = self.core.read_namespaced_secret(source["secretRef"]["name"], namespace).data
                env.update({k: base64.b64decode(v).decode() for k, v in (data or {}).items()})
        for var in plan.container.env:
            env[var["name"]] = self._env_value(namespace, pod, var)
        return {name: local_path(value, mounts) for name, value in env.items()}

    def _env_value(self, namespace: str, pod: str, var: dict[str, Any]) -> str:
        if "value" in var:
            return str(var["value"])
        source = var.get("valueFrom") or {}
        if "fieldRef" in source:
            field_path = source["fieldRef"]["fieldPath"]
            fields = {
                "metadata.name": pod,
                "metadata.namespace": namespace,
                "status.podIP": "127.0.0.1",
            }
            return fields.get(field_path, "")
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            return str(
                (self.core.read_namespaced_config_map(ref["name"], namespace).data or {})[
                    ref["key"]
                ]
            )
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = self.core.read_namespaced_secret(ref["name"], namespace).data or {}
            return base64.b64decode(data[ref["key"]]).decode()
        return ""


def _key(deployment: dict[str, Any]) -> Key:
    meta = deployment["metadata"]
    return meta["namespace"], meta["name"], meta["uid"]


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tail(path: Path, size: int = 16_384) -> bytes:
    """The end of a log file (enough for kubelet's fallback message)."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read()


def recreate(deployment: dict[str, Any]) -> bool:
    """Whether the Deployment replaces its Pods with ``Recreate`` (old ones gone first)."""
    return bool((deployment["spec"].get("strategy") or {}).get("type") == "Recreate")


def _not_ready_first(replicas: list[Replica]) -> list[Replica]:
    return sorted(replicas, key=lambda r: (r.ready, -r.started_at))


def _budget(probe: HttpProbe, config: RunnerConfig) -> float:
    return (
        probe.initial_delay_s
        + probe.failure_threshold * min(probe.period_s, config.max_probe_period_s) * 2
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _signal(replica: Replica, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(replica.process.pid, sig)


def _die_with_parent() -> None:
    """Replicas must not outlive the runner, even when it is SIGKILLed."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _probing(probe: HttpProbe | None, age_s: float) -> bool:
    """Kubelet runs a probe only once its initialDelaySeconds have passed."""
    return probe is not None and age_s >= probe.initial_delay_s
