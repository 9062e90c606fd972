"""pytest fixture for multi-region e2e tests: the hub operator (``--mode hub``) on the hub
kube-apiserver, and per region a member operator and a process runner on that region's own
kube-apiserver, with Regions and kubeconfig Secrets in the hub. Needs the multi-region stack
(``STREAMVANE_REGIONS=3 make stack-up``); skips without it."""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pulsar
import pytest
import yaml

from process_runner import harness
from process_runner.fixtures import ROOT, SAMPLES, TENANT
from process_runner.kubectl import kubectl
from streamvane_stack import Endpoints
from streamvane_stack.manifests import for_stack
from streamvane_stack.publish import send_json
from streamvane_stack.stack import RegionEndpoints

T = TypeVar("T")
REGIONS_NEEDED = 3


@dataclass
class Member:
    region: str
    """Name of the Region object in the hub."""
    endpoints: RegionEndpoints
    operator: harness.Background
    runner: harness.Background


@dataclass
class MultiRegion:
    stack: Endpoints
    namespace: str
    """Namespace of the hub Pipelines (and of their member Pipelines in every region)."""
    pulsar_namespace: str
    hub: harness.Background
    members: dict[str, Member] = field(default_factory=dict)

    def hub_kubectl(self, *args: str, stdin: str | None = None) -> Any:
        return kubectl(self.stack.kubeconfig, *args, stdin=stdin)

    def apply(self, doc: dict[str, Any]) -> None:
        result = self.hub_kubectl(
            "apply", "-n", self.namespace, "-f", "-", stdin=yaml.safe_dump(doc)
        )
        assert result.returncode == 0, result.stderr

    def pipeline(self, name: str) -> dict[str, Any]:
        result = self.hub_kubectl("get", "pipelines", name, "-n", self.namespace, "-o", "json")
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def member_pipeline(self, region: str, name: str) -> dict[str, Any] | None:
        kubeconfig = self.members[region].endpoints.kubeconfig
        result = kubectl(kubeconfig, "get", "pipelines", name, "-n", self.namespace, "-o", "json")
        return json.loads(result.stdout) if result.returncode == 0 else None

    def member_revision(self, region: str, name: str) -> str:
        member = self.member_pipeline(region, name) or {"metadata": {}}
        return str((member["metadata"].get("labels") or {}).get("streamvane.io/revision", ""))

    def rollout(self, name: str) -> dict[str, Any]:
        return dict((self.pipeline(name).get("status") or {}).get("rollout") or {})

    def wait(self, what: str, check: Callable[[], T], timeout_s: float) -> T:
        try:
            return harness.wait_for(what, check, timeout_s, interval_s=0.5)
        except AssertionError as e:
            logs = "".join(
                f"\n--- {m.region} operator ---\n{m.operator.tail(15)}"
                for m in self.members.values()
            )
            raise AssertionError(f"{e}\n--- hub ---\n{self.hub.tail(30)}{logs}") from None

    def topic(self, local: str) -> str:
        return f"persistent://{TENANT}/{self.pulsar_namespace}/{local}"

    def region_names(self) -> list[str]:
        return list(self.members)

    def pipeline_doc(self, name: str, waves: list[list[str]], **rollout: Any) -> dict[str, Any]:
        """The multi-region sample, renamed and placed in this test's Regions."""
        doc = yaml.safe_load((SAMPLES / "pipeline-multi-region.yaml").read_text())
        doc["metadata"] = {"name": name}
        spec = doc["spec"]
        spec["pulsar"] = {"tenant": TENANT, "namespace": self.pulsar_namespace}
        spec["deletionPolicy"] = "Delete"
        spec["placement"] = {"regions": [r for wave in waves for r in wave]}
        spec["rollout"] = {**spec["rollout"], "waves": waves, **rollout}
        spec["stages"][0]["input"]["topic"] = f"{name}-in"
        spec["stages"][0]["outputs"] = [f"{name}-out"]
        return dict(doc)


def publish(url: str, topic: str, docs: Iterable[dict[str, Any]]) -> None:
    client = pulsar.Client(url)
    try:
        send_json(client, topic, docs)
    finally:
        client.close()


def consume_ids(url: str, topic: str, expected: set[str], timeout_s: float) -> set[str]:
    """Ids of messages on ``topic`` (from its start) until all ``expected`` are seen."""
    client = pulsar.Client(url)
    seen: set[str] = set()
    try:
        consumer = client.subscribe(
            topic, f"e2e-{uuid.uuid4().hex[:6]}", initial_position=pulsar.InitialPosition.Earliest
        )
        deadline = time.monotonic() + timeout_s
        while not expected <= seen and time.monotonic() < deadline:
            try:
                message = consumer.receive(timeout_millis=1000)
            except pulsar.Timeout:
                continue
            seen.add(json.loads(message.data())["id"])
            consumer.acknowledge(message)
    finally:
        client.close()
    return seen


def kubeconfig_secret(name: str, namespace: str, kubeconfig: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"kubeconfig": base64.b64encode(kubeconfig.encode()).decode()},
    }


@pytest.fixture(name="regions", scope="module")
def regions_fixture(
    stack: Endpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MultiRegion]:
    if len(stack.regions) < REGIONS_NEEDED:
        pytest.skip("multi-region stack not up: STREAMVANE_REGIONS=3 make stack-up")
    with multi_region(stack, tmp_path_factory.mktemp("regions")) as world:
        yield world


@contextlib.contextmanager
def multi_region(stack: Endpoints, logs: Path, hub_tick_s: float = 1) -> Iterator[MultiRegion]:
    """Regions (with kubeconfig Secrets) for the first three regions of ``stack`` in a fresh
    namespace, the hub operator, and per region a member operator and process runner."""
    suffix = uuid.uuid4().hex[:6]
    namespace = f"e2e-mr-{suffix}"
    hub = harness.Background(
        [
            sys.executable, "-m", "streamvane_operator", "--mode=hub",
            f"--kubeconfig={stack.kubeconfig}", f"--hub-tick-seconds={hub_tick_s}",
            "--log-format=plain",
        ],
        logs / "hub.log",
    )  # fmt: skip
    world = MultiRegion(stack, namespace, namespace, hub)
    for cluster in (stack.kubeconfig, *(r.kubeconfig for r in stack.regions)):
        crds = kubectl(
            cluster, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")
        )
        assert crds.returncode == 0, crds.stderr
        assert kubectl(cluster, "create", "namespace", namespace).returncode == 0
    backend = for_stack(
        yaml.safe_load((SAMPLES / "inferencebackend-triton-local.yaml").read_text()), stack
    )
    for endpoints in stack.regions[:REGIONS_NEEDED]:
        name = f"{endpoints.name}-{suffix}"
        world.apply(kubeconfig_secret(name, namespace, endpoints.kubeconfig.read_text()))
        region = {
            "apiVersion": "streamvane.io/v1alpha1",
            "kind": "Region",
            "metadata": {"name": name},
            "spec": {
                "kubeconfigSecretRef": {"namespace": namespace, "name": name},
                "pulsar": {
                    "cluster": endpoints.pulsar_cluster,
                    "serviceUrl": endpoints.pulsar_url,
                    "adminUrl": endpoints.pulsar_admin_url,
                },
            },
        }
        assert world.hub_kubectl("apply", "-f", "-", stdin=yaml.safe_dump(region)).returncode == 0
        applied = kubectl(
            endpoints.kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(backend)
        )
        assert applied.returncode == 0, applied.stderr
        member_logs = logs / endpoints.name
        world.members[name] = Member(
            name,
            endpoints,
            harness.operator(endpoints.kubeconfig, [namespace], member_logs / "operator.log"),
            harness.runner(
                endpoints.kubeconfig,
                [namespace],
                member_logs / "runner.log",
                member_logs / "replicas",
            ),
        )
    hub.start()
    for member in world.members.values():
        member.operator.start()
        member.runner.start()
    try:
        yield world
    finally:
        _teardown(world)


def _teardown(world: MultiRegion) -> None:
    """Hub Pipelines deleted while everything runs (members delete their workers and, under
    deletionPolicy Delete, their topics), then the processes, Regions and namespaces."""
    world.hub_kubectl("delete", "pipelines", "--all", "-n", world.namespace, "--wait=false")
    with contextlib.suppress(AssertionError):
        harness.wait_for(
            "member pipelines deleted",
            lambda: all(
                kubectl(
                    m.endpoints.kubeconfig, "get", "pipelines", "-n", world.namespace, "-o", "name"
                ).stdout.strip()
                == ""
                for m in world.members.values()
            ),
            timeout_s=60,
        )
    world.hub.stop()
    for member in world.members.values():
        member.runner.stop()
        member.operator.stop()
    for member in world.members.values():
        world.hub_kubectl("delete", "region", member.region, "--wait=false")
    clusters: list[Path] = [
        world.stack.kubeconfig,
        *(m.endpoints.kubeconfig for m in world.members.values()),
    ]
    for cluster in clusters:
        for obj in kubectl(
            cluster, "get", "pipelines", "-n", world.namespace, "-o", "name"
        ).stdout.split():
            kubectl(
                cluster,
                "patch",
                obj,
                "-n",
                world.namespace,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
            )
        kubectl(
            cluster,
            "delete",
            "pipelines,inferencebackends,deployments,configmaps,services,pdb,secrets,controllerrevisions",
            "--all",
            "-n",
            world.namespace,
            "--wait=false",
        )
        kubectl(cluster, "delete", "namespace", world.namespace, "--wait=false")


@dataclass
class Timeline:
    """What changed, when: the hub's rollout phase and each region's revision and phase, polled
    from the hub Pipeline's status and the member Pipelines (seconds since ``start``)."""

    world: MultiRegion
    pipeline: str
    start: float = field(default_factory=time.monotonic)
    events: list[tuple[float, str, str]] = field(default_factory=list)
    _last: dict[str, str] = field(default_factory=dict)

    def poll(self) -> dict[str, Any]:
        status = self.world.pipeline(self.pipeline).get("status") or {}
        rollout = status.get("rollout") or {}
        self._note(
            "rollout",
            f"wave {rollout.get('wave')} {rollout.get('phase')} {rollout.get('revision', '')}".strip(),
        )
        for region in status.get("regions") or []:
            self._note(
                region["name"], f"{region.get('phase')} {region.get('revision', '')}".strip()
            )
        return dict(status)

    def first(self, who: str, text: str) -> float | None:
        """When ``who`` first showed a state containing ``text``."""
        return next((t for t, w, what in self.events if w == who and text in what), None)

    def until(
        self, what: str, done: Callable[[dict[str, Any]], bool], timeout_s: float
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            status = self.poll()
            return status if done(status) else None

        try:
            return self.world.wait(what, check, timeout_s)
        except AssertionError as e:
            events = "\n".join(f"{t:6.1f} {who}: {state}" for t, who, state in self.events)
            raise AssertionError(f"{e}\n--- timeline ---\n{events}") from None

    def _note(self, who: str, what: str) -> None:
        if self._last.get(who) != what:
            self._last[who] = what
            self.events.append((time.monotonic() - self.start, who, what))


def phase_is(*phases: str, after: str = "") -> Callable[[dict[str, Any]], bool]:
    """The rollout is in one of ``phases``, for a revision other than ``after`` (the one
    before a change: its status is still there until the hub's next step)."""

    def check(status: dict[str, Any]) -> bool:
        rollout = status.get("rollout") or {}
        return rollout.get("phase") in phases and rollout.get("revision") != after

    return check


class Traffic:
    """Publishes ids at a steady rate to the input topic in every region's Pulsar."""

    def __init__(self, world: MultiRegion, pipeline: str, rate_per_s: float = 10) -> None:
        self.world, self.pipeline, self.rate = world, pipeline, rate_per_s
        urls = {m.endpoints.pulsar_url for m in world.members.values()}
        self.sent: dict[str, set[str]] = {url: set() for url in urls}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        clients = {url: pulsar.Client(url) for url in self.sent}
        producers = {
            url: c.create_producer(self.world.topic(f"{self.pipeline}-in"))
            for url, c in clients.items()
        }
        n = 0
        while not self._stop.wait(1 / self.rate):
            n += 1
            for url, producer in producers.items():
                item = f"{self.pipeline}-{uuid.uuid4().hex[:4]}-{n:05d}"
                producer.send(json.dumps({"id": item, "title": item}).encode())
                self.sent[url].add(item)
        for c in clients.values():
            c.close()

    def lost(self, timeout_s: float = 90) -> dict[str, int]:
        """Per Pulsar: published ids that never reached the output topic."""
        out = self.world.topic(f"{self.pipeline}-out")
        return {
            url: len(sent - consume_ids(url, out, sent, timeout_s))
            for url, sent in self.sent.items()
        }
