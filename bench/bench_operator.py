"""Control-plane benchmark: the operator with 50, 200 and 500 Pipelines on the real stack.

For each size, in a fresh Kubernetes namespace and a fresh Pulsar namespace, against the
local kube-apiserver and Pulsar (``make stack-up``; the STREAMVANE_* settings apply):

- the real operator (``python -m streamvane_operator``, its default resync and autoscale
  periods) watches the namespace;
- a kubelet-like status writer in this process marks each worker Deployment ready as soon
  as the operator writes it: no worker process runs (1,500 would not fit on 2 cores);
- N Pipelines of 3 passthrough stages each are created at once, then measured:
  seconds until all are Ready; the operator's peak RSS (VmHWM, /proc); its CPU while idle
  with all of them (``--idle-seconds``) and, over the same window, the Pulsar admin calls
  it made (its own Prometheus counter) and the objects it rewrote (resourceVersions of the
  Pipelines and their children before and after); then ``--edits`` edits, one at a time,
  of different Pipelines: seconds from the edit to the new template on its Deployment.

The figures of the largest size are compared with the goals. Cleanup writes directly to
the API server and Pulsar (the operator is stopped first), so it is not measured.

    python -m bench.bench_operator [--sizes 50,200,500] [--idle-seconds 60] [--edits 5]
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import statistics
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from bench.bench_workers import cpu_seconds
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from process_runner import harness
from process_runner.kubectl import kubectl
from streamvane_operator.config import OperatorConfig
from streamvane_stack import Endpoints, Stack

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "streamvane.io", "v1alpha1", "pipelines"
TENANT = "streamvane"
STAGES = 3
WORKERS = "app.kubernetes.io/managed-by=streamvane"
CONFIG_HASH = "streamvane.io/config-hash"
ADMIN_CALLS = "streamvane_operator_pulsar_admin_requests"
TRIGGERS = "streamvane_operator_reconcile_triggers"
CHILD_LISTS = ("deployments", "configmaps", "services", "poddisruptionbudgets")
console = Console(width=150)
app = typer.Typer(add_completion=False, rich_markup_mode=None)


@dataclass(frozen=True)
class Goal:
    label: str
    limit: float
    unit: str

    def met(self, value: float | None) -> bool:
        return value is not None and value <= self.limit


GOALS = {
    "ready_s": Goal("all Ready", 60, "s"),
    "rss_mb": Goal("operator peak RSS", 250, "MB"),
    "idle_cpu": Goal("idle CPU", 5, "% of a core"),
    "admin_per_pipeline": Goal("admin calls at rest", 1, "per Pipeline per min"),
    "edit_s": Goal("one edit -> its Deployment", 2, "s (median)"),
}


@dataclass(frozen=True)
class Result:
    size: int
    ready_s: float | None
    """None: not all Ready within the timeout."""
    rss_mb: float
    idle_cpu: float
    """Percent of one core over the idle window."""
    admin_per_min: float
    rewrites: int
    """Objects (Pipelines and children) whose resourceVersion changed while idle."""
    edit_s: float | None
    load: tuple[float, float, float]
    reconciles_per_min: float

    @property
    def admin_per_pipeline(self) -> float:
        return self.admin_per_min / self.size


def pipeline(name: str, stack: Endpoints, pulsar_namespace: str) -> dict[str, Any]:
    """``name`` with 3 passthrough stages: <name>-in -> -s0 -> -s1 -> <name>-out."""
    topics = [f"{name}-in", f"{name}-s0", f"{name}-s1", f"{name}-out"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Pipeline",
        "metadata": {"name": name},
        "spec": {
            "pulsar": {
                "serviceUrl": stack.pulsar_url,
                "adminUrl": stack.pulsar_admin_url,
                "tenant": TENANT,
                "namespace": pulsar_namespace,
            },
            "deletionPolicy": "Retain",
            "stages": [
                {
                    "name": f"s{i}",
                    "type": "passthrough",
                    "input": {"topic": topics[i]},
                    "outputs": [topics[i + 1]],
                    "batching": {"maxBatchSize": 16},
                }
                for i in range(STAGES)
            ],
        },
    }


def is_ready(obj: dict[str, Any]) -> bool:
    """Ready=True for the current generation (what ``kubectl wait`` and the e2e tests check)."""
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    conditions = status.get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def counter_total(metrics_text: str, name: str) -> float:
    """Sum of every sample of counter ``name`` (all label sets) in a Prometheus exposition."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == name
        for sample in family.samples
        if sample.name == f"{name}_total"
    )


def counter_by(metrics_text: str, name: str, label: str) -> dict[str, float]:
    """Counter ``name`` summed per value of ``label`` (other labels added up)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_total":
                key = sample.labels.get(label, "")
                found[key] = found.get(key, 0.0) + sample.value
    return found


def difference(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per key, how much a counter grew (keys that did not grow are left out)."""
    grown = {key: value - before.get(key, 0.0) for key, value in after.items()}
    return {key: value for key, value in sorted(grown.items()) if value}


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise ValueError(f"no VmHWM for process {pid}")


def changed(before: dict[str, str], after: dict[str, str]) -> int:
    """Objects rewritten (or created, or deleted) between two resourceVersion snapshots."""
    return sum(before.get(key) != version for key, version in after.items()) + len(
        before.keys() - after.keys()
    )


def ready_deployment_status(deployment: Any) -> dict[str, Any] | None:
    """What a kubelet and the Deployment controller would report once every replica of the
    current template is ready; None when the status says so already."""
    replicas = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    status = {
        "observedGeneration": deployment.metadata.generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }
    current = deployment.status
    seen = {
        "observedGeneration": current.observed_generation,
        "replicas": current.replicas,
        "updatedReplicas": current.updated_replicas,
        "readyReplicas": current.ready_replicas,
        "availableReplicas": current.available_replicas,
    }
    return None if seen == status else status


class StatusWriter:
    """Marks the namespace's worker Deployments ready when they change (a watch), as the
    kubelet and the Deployment controller would, in a thread of this process."""

    def __init__(self, apps: k8s.AppsV1Api, namespace: str) -> None:
        self.apps = apps
        self.namespace = namespace
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-writer", daemon=True)

    def __enter__(self) -> StatusWriter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self.apps.list_namespaced_deployment,
                    self.namespace,
                    label_selector=WORKERS,
                    resource_version=version,
                    timeout_seconds=2,
                ):
                    deployment = event["object"]
                    version = deployment.metadata.resource_version
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._mark_ready(deployment)
                    if self._stop.is_set():
                        break
            except k8s.ApiException:
                # An expired or not yet known resourceVersion: list again (ADDED for all).
                version = None
                time.sleep(0.2)

    def _mark_ready(self, deployment: Any) -> None:
        status = ready_deployment_status(deployment)
        if status is None:
            return
        with contextlib.suppress(k8s.ApiException):  # deleted meanwhile
            self.apps.patch_namespaced_deployment_status(
                deployment.metadata.name, self.namespace, {"status": status}
            )
            self.written += 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def scrape(port: int, name: str) -> float:
    return counter_total(metrics_text(port), name)


def triggers(port: int) -> dict[str, float]:
    """The operator's reconciles (and skipped resyncs) so far, by what asked for them."""
    return counter_by(metrics_text(port), TRIGGERS, "trigger")


class Bench:
    """One size's run: namespace, operator, status writer, Pipelines, measurements."""

    def __init__(self, stack: Endpoints, size: int, resync_s: float, log_dir: Path) -> None:
        self.stack = stack
        self.size = size
        self.resync_s = resync_s
        suffix = uuid.uuid4().hex[:6]
        self.namespace = f"bench-op-{size}-{suffix}"
        self.pulsar_namespace = f"bench-op-{size}-{suffix}"
        api = k8s_config.new_client_from_config(config_file=str(stack.kubeconfig))
        self.custom = k8s.CustomObjectsApi(api)
        self.apps = k8s.AppsV1Api(api)
        self.core = k8s.CoreV1Api(api)
        self.policy = k8s.PolicyV1Api(api)
        self.metrics_port = free_port()
        defaults = OperatorConfig()
        self.operator = harness.operator(
            stack.kubeconfig,
            [self.namespace],
            log_dir / f"operator-{size}.log",
            resync_s=resync_s,
            retry_s=defaults.retry_transient_s,
            autoscale_s=defaults.autoscale_interval_s,
            extra_args=[f"--metrics-port={self.metrics_port}", "--metrics-host=127.0.0.1"],
        )
        self.names = [f"p{i:04d}" for i in range(size)]

    @property
    def pid(self) -> int:
        assert self.operator.process is not None
        return self.operator.process.pid

    def run(self, idle_s: float, edits: int, ready_timeout_s: float) -> Result:
        self.core.create_namespace({"metadata": {"name": self.namespace}})
        self.operator.start()
        try:
            harness.wait_for("operator metrics", self._metrics_up, 60)
            with StatusWriter(self.apps, self.namespace) as writer:
                asked = triggers(self.metrics_port)
                ready_s = self._create_all(ready_timeout_s)
                console.print("  until Ready, by trigger: " + self._since(asked))
                time.sleep(2)  # the last status patches land
                idle = self._idle(idle_s)
                asked = triggers(self.metrics_port)
                edit_s = self._edits(edits) if ready_s is not None else None
                console.print("  edits, by trigger: " + self._since(asked))
                rss = peak_rss_mb(self.pid)
                console.print(f"  status writer: {writer.written} Deployment status writes")
        finally:
            self.operator.stop()
            self._cleanup()
        return Result(
            size=self.size,
            ready_s=ready_s,
            rss_mb=rss,
            idle_cpu=idle["cpu"],
            admin_per_min=idle["admin_per_min"],
            rewrites=int(idle["rewrites"]),
            edit_s=edit_s,
            load=os.getloadavg(),
            reconciles_per_min=idle["reconciles_per_min"],
        )

    def _since(self, asked: dict[str, float]) -> str:
        return _counts(difference(asked, triggers(self.metrics_port)))

    def _metrics_up(self) -> bool:
        try:
            scrape(self.metrics_port, ADMIN_CALLS)
        except OSError:
            return False
        return True

    def _create_all(self, timeout_s: float) -> float | None:
        docs = [pipeline(n, self.stack, self.pulsar_namespace) for n in self.names]
        start = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(
                    lambda d: self.custom.create_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL, d
                    ),
                    docs,
                )
            )
        console.print(f"  created {self.size} Pipelines in {time.monotonic() - start:.1f} s")
        last_report = 0.0
        while (elapsed := time.monotonic() - start) < timeout_s:
            ready = sum(is_ready(p) for p in self._pipelines())
            if ready == self.size:
                console.print(f"  all {self.size} Ready after {elapsed:.1f} s")
                return elapsed
            if elapsed - last_report >= 10:
                console.print(f"  {ready}/{self.size} Ready after {elapsed:.0f} s")
                last_report = elapsed
            time.sleep(1)
        console.print(f"  [red]not all Ready within {timeout_s:.0f} s[/red]")
        return None

    def _pipelines(self) -> list[dict[str, Any]]:
        listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        return list(listing["items"])

    def _versions(self) -> dict[str, str]:
        """kind/name -> resourceVersion of every Pipeline and worker object."""
        found = {
            f"Pipeline/{p['metadata']['name']}": p["metadata"]["resourceVersion"]
            for p in self._pipelines()
        }
        listings: dict[str, Callable[..., Any]] = {
            "deployments": self.apps.list_namespaced_deployment,
            "configmaps": self.core.list_namespaced_config_map,
            "services": self.core.list_namespaced_service,
            "poddisruptionbudgets": self.policy.list_namespaced_pod_disruption_budget,
        }
        for kind, list_fn in listings.items():
            for obj in list_fn(self.namespace, label_selector=WORKERS).items:
                found[f"{kind}/{obj.metadata.name}"] = obj.metadata.resource_version
        return found

    def _idle(self, seconds: float) -> dict[str, float]:
        console.print(f"  idle for {seconds:.0f} s (resync every {self.resync_s:g} s) ...")
        versions = self._versions()
        calls = scrape(self.metrics_port, ADMIN_CALLS)
        reconciles = scrape(self.metrics_port, "streamvane_operator_reconciles")
        asked = triggers(self.metrics_port)
        operations = counter_by(metrics_text(self.metrics_port), ADMIN_CALLS, "operation")
        cpu, wall = cpu_seconds(self.pid), time.monotonic()
        time.sleep(seconds)
        cpu, wall = cpu_seconds(self.pid) - cpu, time.monotonic() - wall
        calls = scrape(self.metrics_port, ADMIN_CALLS) - calls
        reconciles = scrape(self.metrics_port, "streamvane_operator_reconciles") - reconciles
        asked = difference(asked, triggers(self.metrics_port))
        operations = difference(
            operations, counter_by(metrics_text(self.metrics_port), ADMIN_CALLS, "operation")
        )
        rewrites = changed(versions, self._versions())
        console.print(
            f"  idle: {100 * cpu / wall:.1f} % of a core, {calls:.0f} admin calls, "
            f"{reconciles:.0f} reconciles, {rewrites} objects rewritten"
        )
        console.print("  idle, by trigger: " + _counts(asked))
        console.print("  idle, admin calls: " + _counts(operations))
        return {
            "cpu": 100 * cpu / wall,
            "admin_per_min": calls * 60 / wall,
            "reconciles_per_min": reconciles * 60 / wall,
            "rewrites": rewrites,
        }

    def _edits(self, count: int) -> float | None:
        """Median seconds from an edit of one Pipeline to the new template on its Deployment."""
        step = max(len(self.names) // max(count, 1), 1)
        took: list[float] = []
        for i, name in enumerate(self.names[::step][:count]):
            deployment = f"{name}-s0"
            before = self._config_hash(deployment)
            start = time.monotonic()
            stages = pipeline(name, self.stack, self.pulsar_namespace)["spec"]["stages"]
            stages[0]["batching"]["maxBatchSize"] = 32 + i
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, {"spec": {"stages": stages}}
            )
            while time.monotonic() - start < 120:
                if self._config_hash(deployment) != before:
                    took.append(time.monotonic() - start)
                    break
                time.sleep(0.05)
            else:
                console.print(f"  [red]edit of {name} never reached {deployment}[/red]")
                return None
        console.print("  edits -> Deployment: " + ", ".join(f"{t:.2f} s" for t in took))
        return statistics.median(took) if took else None

    def _config_hash(self, name: str) -> str | None:
        deployment = self.apps.read_namespaced_deployment(name, self.namespace)
        return (deployment.spec.template.metadata.annotations or {}).get(CONFIG_HASH)

    def _cleanup(self) -> None:
        """Without the operator: finalizers off, objects and namespace deleted, the Pulsar
        namespace's topics and the namespace deleted (the local apiserver has no
        namespace controller or garbage collector)."""
        console.print("  cleaning up ...")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self._unfinalize, self.names))
        for kind in ("pipelines", "inferencebackends", *CHILD_LISTS, "events"):
            kubectl(
                self.stack.kubeconfig, "delete", kind, "--all", "-n", self.namespace, "--wait=false"
            )
        kubectl(self.stack.kubeconfig, "delete", "namespace", self.namespace, "--wait=false")
        base = f"/admin/v2/persistent/{TENANT}/{self.pulsar_namespace}"
        with httpx.Client(base_url=self.stack.pulsar_admin_url, timeout=60) as http:
            listing = http.get(base)
            topics = listing.json() if listing.is_success else []
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda t: _delete_topic(http, t), topics))
            http.delete(f"/admin/v2/namespaces/{TENANT}/{self.pulsar_namespace}")

    def _unfinalize(self, name: str) -> None:
        with contextlib.suppress(k8s.ApiException):
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, {"metadata": {"finalizers": None}}
            )


def _delete_topic(http: httpx.Client, topic: str) -> None:
    http.delete(
        f"/admin/v2/persistent/{topic.removeprefix('persistent://')}", params={"force": "true"}
    )


def machine() -> str:
    cpus = os.cpu_count()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    mem = next(
        int(line.split()[1]) // (1024 * 1024)
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return f"{platform.node()}: {cpus} cores ({model}), {mem} GiB, {platform.platform()}"


def _counts(counts: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.0f}" for key, value in counts.items()) or "none"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(results: Sequence[Result], idle_s: float, edits: int, resync_s: float) -> None:
    table = Table(
        title=(
            f"Operator with N Pipelines of {STAGES} passthrough stages (resync {resync_s:g} s, "
            f"idle window {idle_s:g} s, median of {edits} edits)"
        ),
        caption=(
            "idle CPU: % of one core; admin calls, rewrites (objects whose resourceVersion "
            "changed) and reconciles: at rest over the idle window; edit: seconds from an edit "
            "to the new template on its Deployment"
        ),
    )
    for column in (
        "Pipelines",
        "all Ready s",
        "peak RSS MB",
        "idle CPU %",
        "admin calls/min",
        "per Pipeline",
        "rewrites",
        "reconciles/min",
        "edit s",
        "load 1 min",
    ):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            str(r.size),
            _seconds(r.ready_s),
            f"{r.rss_mb:.0f}",
            f"{r.idle_cpu:.1f}",
            f"{r.admin_per_min:.0f}",
            f"{r.admin_per_pipeline:.2f}",
            str(r.rewrites),
            f"{r.reconciles_per_min:.0f}",
            "-" if r.edit_s is None else f"{r.edit_s:.2f}",
            f"{r.load[0]:.1f}",
        )
    console.print(table)
    largest = max(results, key=lambda r: r.size)
    goals = Table(title=f"Goals at {largest.size} Pipelines")
    for column in ("goal", "limit", "measured", "met"):
        goals.add_column(column, justify="left" if column == "goal" else "right")
    for key, goal in GOALS.items():
        value = getattr(largest, key)
        goals.add_row(
            goal.label,
            f"<= {goal.limit:g} {goal.unit}",
            "-" if value is None else f"{value:.2f}",
            "[green]yes[/green]" if goal.met(value) else "[red]no[/red]",
        )
    console.print(goals)


def sizes_of(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as e:
        raise typer.BadParameter(f"--sizes takes numbers separated by commas: {text!r}") from e
    if not sizes or min(sizes) < 1:
        raise typer.BadParameter("--sizes needs at least one size, each >= 1")
    return sizes


def install_crds(stack: Endpoints) -> None:
    applied = kubectl(
        stack.kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds")
    )
    if applied.returncode != 0:
        raise typer.BadParameter(f"cannot install the CRDs: {applied.stderr}")


@app.command(
    help=(
        "Run the real operator against the local kube-apiserver and Pulsar with N Pipelines "
        "(3 passthrough stages each) per size, and report seconds until all are Ready, the "
        "operator's peak RSS, its idle CPU, Pulsar admin calls and object writes at rest, "
        "and the time one edit takes to reach its Deployment, against the goals. A status "
        "writer marks the Deployments ready instead of running worker processes. Needs "
        "`make stack-up`."
    )
)
def main(
    sizes: Annotated[
        str, typer.Option(help="Pipeline counts to measure, one run each, comma-separated.")
    ] = "50,200,500",
    idle_seconds: Annotated[
        float,
        typer.Option(min=5, help="Idle window for CPU, admin calls and rewrites at rest."),
    ] = 60,
    edits: Annotated[int, typer.Option(min=1, help="Edits timed per size (median shown).")] = 5,
    resync_seconds: Annotated[
        float, typer.Option(help="The operator's --resync-seconds (its default).")
    ] = OperatorConfig().resync_s,
    ready_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for all Pipelines of a size to be Ready.")
    ] = 900,
) -> None:
    counts = sizes_of(sizes)
    # SIGTERM unwinds like Ctrl-C: the operator stops and the namespace is cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack = Stack()
    if not stack.is_ready():
        raise typer.BadParameter("the local stack is not running: run `make stack-up`")
    endpoints = stack.endpoints
    started = datetime.now(UTC)
    console.print(f"[bold]bench-operator[/bold] {started:%Y-%m-%d %H:%M} UTC on {machine()}")
    console.print(
        "  No worker process runs: a kubelet-like status writer in this process marks each "
        "worker Deployment ready once the operator writes it "
        f"({max(counts) * STAGES:,} worker processes would not fit on this machine)."
    )
    results = []
    install_crds(endpoints)
    for size in counts:
        load = os.getloadavg()
        console.print(
            f"[bold]{size} Pipelines[/bold] (load average {load[0]:.1f} {load[1]:.1f} "
            f"{load[2]:.1f})"
        )
        bench = Bench(endpoints, size, resync_seconds, stack.settings.run_dir / "bench-operator")
        results.append(bench.run(idle_seconds, edits, ready_timeout))
    report(results, idle_seconds, edits, resync_seconds)
    load = os.getloadavg()
    console.print(
        f"  {started:%Y-%m-%d} on {machine()}; load average at the end "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (other jobs share the cores)"
    )


if __name__ == "__main__":
    app()
