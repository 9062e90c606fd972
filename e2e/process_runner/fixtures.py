"""pytest fixtures for pipeline e2e tests: a namespace with the operator and the process
runner running against the local stack. Import ``cluster_fixture`` into a test module to get
the ``cluster`` fixture."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pulsar
import pytest
import yaml

from process_runner import harness
from process_runner.kubectl import kubectl
from streamvane_operator.pulsar.admin import PulsarAdmin, TopicName
from streamvane_operator.pulsar.errors import PulsarNotFound
from streamvane_stack import Endpoints
from streamvane_stack.manifests import for_stack
from streamvane_stack.models import copy_model, drop_model
from streamvane_stack.publish import send_json

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "crds" / "samples"
DEMO_ITEMS = ROOT / "e2e" / "streamvane_demo" / "content_items.jsonl"
TENANT = "streamvane-e2e"
RANKER = "recs-ranker"
"""The built ranking model the recommendation sample names."""
T = TypeVar("T")


@dataclass
class Cluster:
    stack: Endpoints
    kubeconfig: Path
    namespace: str
    pulsar_namespace: str
    pulsar_url: str
    pulsar_admin_url: str
    operator: harness.Background
    runner: harness.Background
    replica_logs: Path
    others: list[str] = field(default_factory=list)
    """More namespaces the operator watches (Pipelines of other tenants)."""
    pulsar_client_options: dict[str, Any] = field(default_factory=dict)
    """Extra ``pulsar.Client`` arguments (token, CA) of ``publish`` and ``consume``."""
    models: list[str] = field(default_factory=list)
    """Model copies of this test's in the stack's Triton (``own_model``), dropped at the end."""

    def kubectl(self, *args: str, stdin: str | None = None, namespace: str | None = None) -> Any:
        return kubectl(self.kubeconfig, *args, "-n", namespace or self.namespace, stdin=stdin)

    def sample(self, name: str) -> dict[str, Any]:
        """A sample from crds/samples, pointed at this stack and this test's Pulsar namespace."""
        doc = for_stack(yaml.safe_load((SAMPLES / name).read_text()), self.stack)
        if doc["kind"] == "Pipeline":
            doc["spec"]["pulsar"].update(tenant=TENANT, namespace=self.pulsar_namespace)
        return doc

    def apply(self, doc: dict[str, Any], namespace: str | None = None) -> Any:
        return self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc), namespace=namespace)

    def own_model(self, base: str) -> str:
        """A copy of ``base`` for this test alone (its trainer writes versions of it)."""
        name = f"{base}-{self.namespace}"
        copy_model(self.stack, base, name)
        self.models.append(name)
        return name

    def apply_recommendation_samples(
        self, timeout_s: float, params: Mapping[str, dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The content sample and the recommendation sample chained to it (its catalogue is
        the content pipeline's output), both Ready, on a ranker of this test's own (the
        sample's trainer promotes versions of it); ``params`` overrides stage params by stage
        type. Returns the recommendation Pipeline."""
        assert self.apply(self.sample("inferencebackend-triton-local.yaml")).returncode == 0
        assert self.apply(self.sample("pipeline-content-understanding.yaml")).returncode == 0
        recs = self.sample("pipeline-recommendation.yaml")
        ranker = self.own_model(RANKER)
        for stage in recs["spec"]["stages"]:
            if "catalogueTopic" in stage["params"]:  # not every stage reads the catalogue
                stage["params"]["catalogueTopic"] = self.topic("content-enriched")
            if stage.get("model", {}).get("name") == RANKER:
                stage["model"]["name"] = ranker
            stage["params"].update((params or {}).get(stage["type"], {}))
        assert self.apply(recs).returncode == 0
        self.wait_ready("content-understanding", timeout_s=timeout_s)
        return self.wait_ready("recommendation", timeout_s=timeout_s)

    def enrich_demo_items(self, timeout_s: float) -> dict[str, dict[str, Any]]:
        """The demo's items through the content sample: its enriched items by id (the
        recommendation sample's catalogue)."""
        items = [json.loads(line) for line in DEMO_ITEMS.read_text().splitlines() if line.strip()]
        self.publish("content-items", items)
        enriched = {d["id"]: d for d in self.consume("content-enriched", len(items), timeout_s)}
        assert len(enriched) == len(items), f"{len(enriched)} of {len(items)} items enriched"
        return enriched

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object as stored, managedFields included (kubectl leaves them out by default)."""
        result = self.kubectl(
            "get", kind, name, "-o", "json", "--show-managed-fields", namespace=namespace
        )
        return json.loads(result.stdout) if result.returncode == 0 else None

    def items(
        self, kind: str, selector: str | None = None, namespace: str | None = None
    ) -> dict[str, dict[str, Any]]:
        args = ["get", kind, "-o", "json", *(["-l", selector] if selector else [])]
        result = self.kubectl(*args, namespace=namespace)
        assert result.returncode == 0, result.stderr
        return {i["metadata"]["name"]: i for i in json.loads(result.stdout)["items"]}

    def topic(self, local: str) -> str:
        return f"persistent://{TENANT}/{self.pulsar_namespace}/{local}"

    def condition(
        self, name: str, type_: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        pipeline = self.get("pipelines", name, namespace) or {}
        conditions = (pipeline.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), None)

    def wait_ready(
        self, name: str, timeout_s: float = 120, namespace: str | None = None
    ) -> dict[str, Any]:
        """Until Ready=True for the current generation; returns the Pipeline."""

        def ready() -> dict[str, Any] | None:
            pipeline = self.get("pipelines", name, namespace)
            if pipeline is None:
                return None
            status = pipeline.get("status") or {}
            generation = pipeline["metadata"]["generation"]
            current = status.get("observedGeneration") == generation
            conditions = status.get("conditions") or []
            cond: dict[str, Any] = next((c for c in conditions if c["type"] == "Ready"), {})
            return pipeline if current and cond.get("status") == "True" else None

        pipeline = self.wait(f"Pipeline {name} Ready", ready, timeout_s)
        assert pipeline is not None
        return pipeline

    def wait(self, what: str, check: Callable[[], T], timeout_s: float) -> T:
        try:
            return harness.wait_for(what, check, timeout_s)
        except AssertionError as e:
            raise AssertionError(
                f"{e}\n--- operator log ---\n{self.operator.tail()}"
                f"\n--- runner log ---\n{self.runner.tail()}"
            ) from None

    def pulsar_topics(self) -> dict[str, int]:
        """Local topic name -> partitions; empty while the Pulsar namespace does not exist."""
        admin = PulsarAdmin(self.pulsar_admin_url)
        try:
            return admin.topics(TENANT, self.pulsar_namespace)
        except PulsarNotFound:
            return {}
        finally:
            admin.close()

    def subscriptions(self, local: str) -> list[str]:
        admin = PulsarAdmin(self.pulsar_admin_url)
        try:
            return admin.subscriptions(TopicName(TENANT, self.pulsar_namespace, local))
        finally:
            admin.close()

    def publish(self, local: str, docs: Iterable[dict[str, Any]]) -> None:
        """Each document as one JSON message on topic ``local``."""
        client = pulsar.Client(self.pulsar_url, **self.pulsar_client_options)
        try:
            send_json(client, self.topic(local), docs)
        finally:
            client.close()

    def consume(self, local: str, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
        """Up to ``count`` JSON messages of topic ``local``, read from its beginning on a new
        subscription; fewer when ``timeout_s`` passes first."""
        client = pulsar.Client(self.pulsar_url, **self.pulsar_client_options)
        docs: list[dict[str, Any]] = []
        try:
            consumer = client.subscribe(
                self.topic(local),
                f"e2e-{uuid.uuid4().hex[:6]}",
                initial_position=pulsar.InitialPosition.Earliest,
            )
            deadline = time.monotonic() + timeout_s
            while len(docs) < count and time.monotonic() < deadline:
                try:
                    message = consumer.receive(timeout_millis=1000)
                except pulsar.Timeout:
                    continue
                docs.append(json.loads(message.data()))
                consumer.acknowledge(message)
        finally:
            client.close()
        return docs


@pytest.fixture(name="cluster")
def cluster_fixture(stack: Endpoints, tmp_path: Path) -> Iterator[Cluster]:
    """A fresh namespace with CRDs installed, the operator and the process runner running."""
    with running_cluster(stack, tmp_path) as cluster:
        yield cluster


@contextlib.contextmanager
def running_cluster(
    stack: Endpoints, tmp_path: Path, other_namespaces: int = 0
) -> Iterator[Cluster]:
    """A fresh namespace (and ``other_namespaces`` more, in ``Cluster.others``) with CRDs
    installed, the operator and the process runner watching all of them."""
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    others = [f"e2e-{uuid.uuid4().hex[:8]}" for _ in range(other_namespaces)]
    crds = kubectl(
        stack.kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")
    )
    assert crds.returncode == 0, crds.stderr
    for name in (namespace, *others):
        assert kubectl(stack.kubeconfig, "create", "namespace", name).returncode == 0
    logs = tmp_path / "logs"
    watched = [namespace, *others]
    cluster = Cluster(
        stack=stack,
        kubeconfig=stack.kubeconfig,
        namespace=namespace,
        pulsar_namespace=namespace,
        pulsar_url=stack.pulsar_url,
        pulsar_admin_url=stack.pulsar_admin_url,
        operator=harness.operator(stack.kubeconfig, watched, logs / "operator.log"),
        runner=harness.runner(stack.kubeconfig, watched, logs / "runner.log", logs / "replicas"),
        replica_logs=logs / "replicas",
        others=others,
    )
    cluster.operator.start()
    cluster.runner.start()
    try:
        yield cluster
    finally:
        teardown(cluster)


def _cleanup_delete(http: httpx.Client, path: str, **params: str) -> None:
    """A best-effort delete: the broker can take longer than the client waits (deleting a
    namespace's ``__change_events`` once hung for its internal 30 s ack timeout), and what is
    left goes with the stack's data (``make test`` starts from a fresh stack)."""
    with contextlib.suppress(httpx.TimeoutException):
        http.delete(path, params=params)


def teardown(cluster: Cluster) -> None:
    """Delete Pipelines while the operator runs (it stops their workers), then the rest."""
    if not cluster.operator.running:
        cluster.operator.start()
    namespaces = [cluster.namespace, *cluster.others]
    for ns in namespaces:
        cluster.kubectl(
            "delete", "pipelines,inferencebackends", "--all", "--wait=false", namespace=ns
        )

    def deleted() -> bool:
        listed = [
            cluster.kubectl("get", "pipelines,inferencebackends", "-o", "name", namespace=ns)
            for ns in namespaces
        ]
        return not any(r.stdout.strip() for r in listed)

    with contextlib.suppress(AssertionError):
        harness.wait_for("pipelines deleted", deleted, timeout_s=60)
    cluster.runner.stop()
    cluster.operator.stop()
    for ns in namespaces:
        for kind in ("pipelines", "inferencebackends"):
            for obj in cluster.kubectl("get", kind, "-o", "name", namespace=ns).stdout.split():
                cluster.kubectl(
                    "patch",
                    obj,
                    "--type=merge",
                    "-p",
                    '{"metadata":{"finalizers":null}}',
                    namespace=ns,
                )
        cluster.kubectl(
            "delete",
            "deployments,configmaps,services,pdb,pods",
            "--all",
            "--wait=false",
            namespace=ns,
        )
        kubectl(cluster.kubeconfig, "delete", "namespace", ns, "--wait=false")
    base = cluster.pulsar_admin_url.rstrip("/")
    with httpx.Client(base_url=base, timeout=30) as http:
        for kind, suffix in (("/partitioned", "/partitions"), ("", "")):
            listing = http.get(f"/admin/v2/persistent/{TENANT}/{cluster.pulsar_namespace}{kind}")
            for topic in listing.json() if listing.is_success else []:
                path = topic.removeprefix("persistent://")
                _cleanup_delete(http, f"/admin/v2/persistent/{path}{suffix}", force="true")
        _cleanup_delete(http, f"/admin/v2/namespaces/{TENANT}/{cluster.pulsar_namespace}")
    for model in cluster.models:
        drop_model(cluster.stack, model)
