"""Careless and hostile manifests next to a running pipeline, as many teams share a cluster.

One operator (watching two namespaces) takes every manifest of the suite in a few batches:
malformed, oversized, deeply nested, conflicting and cross-tenant. Each is refused by the API
server or reported in status with a message that says what to change; afterwards the operator
is still the process it was, every deletion has completed, nothing half-made is left, and the
running pipeline's objects, topics, subscriptions and messages are as they were.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from process_runner.fixtures import Cluster, running_cluster
from streamvane_stack import Endpoints

pytestmark = pytest.mark.e2e

RELAY = "pipeline-passthrough.yaml"


@pytest.fixture
def tenants(stack: Endpoints, tmp_path: Any) -> Any:
    with running_cluster(stack, tmp_path, other_namespaces=1) as cluster:
        yield cluster


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(n)]


def delivered(cluster: Cluster, topic: str, sent: list[str]) -> bool:
    got = {doc["id"] for doc in cluster.consume(topic, 10_000, timeout_s=5)}
    return set(sent) <= got


def passthrough(name: str, source: str, out: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "passthrough",
        "input": {"topic": source},
        "outputs": [out],
    } | extra


def pipeline(cluster: Cluster, name: str, *stages: dict[str, Any], **spec: Any) -> dict[str, Any]:
    doc = cluster.sample(RELAY)
    doc["metadata"] = {"name": name}
    doc["spec"]["stages"] = list(stages)
    doc["spec"].update(spec)
    return doc


DEEP = 1200
NESTED = "<an object nested DEEP levels>"


def as_json(doc: dict[str, Any]) -> str:
    """JSON of ``doc`` where NESTED becomes an object DEEP levels deep (too deep for
    json.dumps, as it was for the watcher of older operators)."""
    return json.dumps(doc).replace(json.dumps(NESTED), '{"a":' * DEEP + "{}" + "}" * DEEP)


def refused_manifests(cluster: Cluster) -> list[tuple[str, dict[str, Any], str]]:
    """(what, manifest, a piece of the API server's answer)."""
    relay = cluster.sample(RELAY)

    def edited(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = copy.deepcopy(base or relay)
        doc["metadata"]["name"] = "bad"
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
        return doc

    tagging = edited(
        "spec.stages.0",
        {
            "name": "tag",
            "type": "tagging",
            "input": {"topic": "t-in"},
            "model": {"backend": "triton-local", "name": "all-minilm-l6-v2"},
            "params": {"labels": [{"name": "x", "description": "y"}]},
        },
    )
    long_name = copy.deepcopy(relay)
    long_name["metadata"]["name"] = "p" * 70
    dotted = copy.deepcopy(relay)
    dotted["metadata"]["name"] = "relay.v2"
    long_child = copy.deepcopy(relay)
    long_child["metadata"]["name"] = "p" * 40
    long_child["spec"]["stages"][0]["name"] = "s" * 30
    backend = {
        "apiVersion": "streamvane.io/v1alpha1",
        "kind": "InferenceBackend",
        "metadata": {"name": "bad-port"},
        "spec": {"endpoint": {"url": "triton:99999"}},
    }
    return [
        ("params nested 1,200 deep", edited("spec.stages.0.params", NESTED), "unknown field"),
        ("unknown params field", edited("spec.stages.0.params", {"deep": {}}), "unknown field"),
        ("name of 70 characters", long_name, "metadata.name"),
        ("name with a dot", dotted, "metadata.name"),
        ("<pipeline>-<stage> over 63", long_child, "must be at most 63 characters"),
        ("unknown stage type", edited("spec.stages.0.type", "translate"), "Unsupported value"),
        (
            "labels on a passthrough stage",
            edited("spec.stages.0.params", {"labels": [{"name": "a", "description": "b"}]}),
            "params.labels is only for stage type tagging",
        ),
        (
            "tagging without labels",
            edited("spec.stages.0.params", {"topK": 2}, tagging),
            "stage type tagging needs params.labels",
        ),
        (
            "600 labels",
            edited(
                "spec.stages.0.params.labels", [{"name": "x", "description": "y"}] * 600, tagging
            ),
            "must have at most 512 items",
        ),
        (
            "label description of 5,000 characters",
            edited(
                "spec.stages.0.params.labels", [{"name": "x", "description": "y" * 5000}], tagging
            ),
            "may not be more than 2048",
        ),
        ("malformed image", edited("spec.image", "Not An Image!"), "spec.image"),
        (
            "33 stages",
            edited("spec.stages", [passthrough(f"s{i}", "a", "b") for i in range(33)]),
            "must have at most 32 items",
        ),
        ("port 99999", backend, "spec.endpoint.url"),
        (
            "minReplicas above maxReplicas",
            edited("spec.stages.0.scaling", {"minReplicas": 3, "maxReplicas": 1}),
            "minReplicas must be <= maxReplicas",
        ),
    ]


@pytest.mark.timeout(900)  # a few minutes on a quiet machine; worker start-ups dominate
def test_hostile_manifests_are_refused_or_reported_and_the_running_pipeline_is_untouched(
    tenants: Cluster,
) -> None:
    cluster = tenants
    (other,) = cluster.others
    ns = cluster.namespace
    assert cluster.apply(cluster.sample(RELAY)).returncode == 0
    cluster.wait_ready("relay", timeout_s=300)  # the operator starts slowly on a busy machine
    before_objects = {
        kind: {n: o["metadata"]["resourceVersion"] for n, o in cluster.items(kind).items()}
        for kind in ("deployments", "configmaps", "services", "pdb")
    }
    relay_subscriptions = {t: cluster.subscriptions(t) for t in ("relay-in", "relay-mid")}
    first = ids("before", 50)
    cluster.publish("relay-in", ({"id": i, "title": i} for i in first))
    cluster.wait("messages before", lambda: delivered(cluster, "relay-out", first), 60)

    # 1. Refused (each on its own: kubectl validates a whole batch before sending any).
    for what, doc, answer in refused_manifests(cluster):
        result = cluster.kubectl("apply", "-f", "-", stdin=as_json(doc))
        assert result.returncode != 0, f"{what} was accepted"
        assert answer in result.stderr, f"{what}: {result.stderr[:2000]}"
    assert set(cluster.items("pipelines")) == {"relay"} and cluster.items("inferencebackends") == {}

    # 2. Accepted, then reported in status; nothing of theirs is created.
    assert (
        cluster.kubectl("create", "configmap", "clash-first", "--from-literal=keep=me").returncode
        == 0
    )
    assert (
        cluster.kubectl("create", "service", "clusterip", "taken-first", "--tcp=80:80").returncode
        == 0
    )
    big_labels = [{"name": f"l{i}", "description": f"{i} " + "x" * 1900} for i in range(150)]
    ghost = pipeline(cluster, "ghost", passthrough("first", "ghost-in", "ghost-out"))
    ghost["spec"]["pulsar"]["adminUrl"] = "http://127.0.0.1:9"  # nothing listens, ever
    reported = {
        "clash": (
            pipeline(cluster, "clash", passthrough("first", "clash-in", "clash-out")),
            "NameConflict",
            f"ConfigMap {ns}/clash-first already exists and was not created by this resource",
        ),
        "taken": (
            pipeline(cluster, "taken", passthrough("first", "taken-in", "taken-out")),
            "NameConflict",
            f"Service {ns}/taken-first already exists",
        ),
        "intruder": (
            pipeline(cluster, "intruder", passthrough("copy", "relay-mid", "relay-out")),
            "TopicConflict",
            f"relay-out belongs to Pipeline {ns}/relay",
        ),
        "ghost": (ghost, "PulsarUnavailable", "127.0.0.1:9"),
        "big": (
            pipeline(
                cluster,
                "big",
                {
                    "name": "tag",
                    "type": "tagging",
                    "input": {"topic": "big-in"},
                    "model": {"backend": "nowhere", "name": "m"},
                    "params": {"labels": big_labels},
                },
            ),
            "InvalidSpec",
            "InferenceBackend 'nowhere' does not exist",
        ),
    }
    big = yaml.safe_dump(reported["big"][0])
    assert len(big) > 280_000
    # kubectl apply would store a copy of a large spec in an annotation: create it instead.
    assert cluster.kubectl("create", "-f", "-", stdin=big).returncode == 0
    docs = [doc for name, (doc, _, _) in reported.items() if name != "big"]
    result = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    assert result.returncode == 0, result.stderr
    same_name = pipeline(cluster, "relay", passthrough("first", "relay-in", "relay-mid"))
    copy_of_input = pipeline(
        cluster,
        "relay",
        passthrough("first", "relay-in", "copy-out", delivery={"deadLetterTopic": "copy-dlq"}),
    )
    assert cluster.apply(same_name, namespace=other).returncode == 0

    def reason(name: str, namespace: str | None = None) -> tuple[str, str] | None:
        cond = cluster.condition(name, "Degraded", namespace) or {}
        return (cond["reason"], cond["message"]) if cond.get("status") == "True" else None

    for name, (_, expected, message) in reported.items():
        got = cluster.wait(f"{name} reported", lambda n=name: reason(n), 60)  # type: ignore[misc]
        assert got[0] == expected and message in got[1], (name, got)
    got = cluster.wait("same-named Pipeline reported", lambda: reason("relay", other), 60)
    assert got[0] == "TopicConflict" and f"relay-mid belongs to Pipeline {ns}/relay" in got[1]
    assert "spec.sharedOutputs" in got[1]
    assert cluster.get("configmap", "clash-first")["data"] == {"keep": "me"}  # type: ignore[index]
    assert sorted(cluster.items("deployments")) == ["relay-first", "relay-second"]
    assert not [
        t
        for t in cluster.pulsar_topics()
        if t.split("-")[0] in {"clash", "taken", "intruder", "big"}
    ]
    assert {t: cluster.subscriptions(t) for t in ("relay-in", "relay-mid")} == relay_subscriptions

    # An emoji survives server-side apply (it used to be sent as a refused surrogate pair).
    backend = cluster.sample("inferencebackend-triton-local.yaml")
    assert cluster.apply(backend).returncode == 0
    emoji = pipeline(
        cluster,
        "emoji",
        {
            "name": "tag",
            "type": "tagging",
            "input": {"topic": "emoji-in"},
            "model": {"backend": "triton-local", "name": "all-minilm-l6-v2"},
            "params": {"labels": [{"name": "party", "description": "celebrations 🎉🥳"}]},
            "scaling": {"minReplicas": 0, "maxReplicas": 1},
        },
    )
    assert cluster.apply(emoji).returncode == 0

    def emoji_config() -> bool:
        config_map = cluster.get("configmap", "emoji-tag") or {}
        return "🎉🥳" in json.loads((config_map.get("data") or {}).get("worker.json", "{}")).get(
            "params", {}
        ).get("labels", [{}])[0].get("description", "")

    cluster.wait("emoji applied", emoji_config, 60)
    reported["emoji"] = (emoji, "", "")

    # 3. Another tenant reads the running pipeline's input: its own subscription, from now on.
    assert cluster.apply(copy_of_input, namespace=other).returncode == 0
    cluster.wait_ready("relay", timeout_s=300, namespace=other)
    subs = cluster.subscriptions("relay-in")
    assert sorted(subs) == sorted([*relay_subscriptions["relay-in"], f"{other}.relay-first"])
    second = ids("during", 50)
    cluster.publish("relay-in", ({"id": i, "title": i} for i in second))
    cluster.wait(
        "running pipeline keeps every message", lambda: delivered(cluster, "relay-out", second), 60
    )
    copied = {doc["id"] for doc in cluster.consume("copy-out", 10_000, timeout_s=10)}
    assert copied == set(second), "the other tenant replayed history or lost messages"

    # 4. Every deletion completes; what others own or made stays.
    # A Pipeline with workers is deleted once they have stopped, which takes longer than one
    # kubectl call may wait on a busy machine: ask for all deletions, then wait for them.
    names = [*reported]
    assert cluster.kubectl("delete", "pipeline", *names, "--wait=false").returncode == 0
    deleting = cluster.kubectl("delete", "pipeline", "relay", "--wait=false", namespace=other)
    assert deleting.returncode == 0
    cluster.wait(
        "every deletion completed",
        lambda: (
            set(cluster.items("pipelines")) == {"relay"}
            and not cluster.items("pipelines", namespace=other)
        ),
        240,
    )
    assert cluster.get("configmap", "clash-first")["data"] == {"keep": "me"}  # type: ignore[index]
    assert cluster.get("service", "taken-first") is not None
    topics = set(cluster.pulsar_topics())
    assert {"relay-in", "relay-mid", "relay-out"} <= topics
    # The other tenant's topics went with it, except copy-out: this test's reader reads it.
    assert "copy-dlq" not in topics and "copy-out" in topics
    assert {t: cluster.subscriptions(t) for t in ("relay-in", "relay-mid")} == relay_subscriptions

    # 5. The operator never went down, and the running pipeline is as it was.
    assert cluster.operator.running
    assert "Traceback" not in cluster.operator.tail(100_000)
    after_objects = {
        kind: {n: o["metadata"]["resourceVersion"] for n, o in cluster.items(kind).items()}
        for kind in ("deployments", "configmaps", "services", "pdb")
    }
    for kind, versions in before_objects.items():
        assert {n: v for n, v in after_objects[kind].items() if n in versions} == versions, kind
    last = ids("after", 50)
    cluster.publish("relay-in", ({"id": i, "title": i} for i in last))
    cluster.wait("messages after", lambda: delivered(cluster, "relay-out", last), 60)
    assert (cluster.condition("relay", "Degraded") or {}).get("status") == "False"
