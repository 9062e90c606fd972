"""The process runner (tests/demo only) against the real kube-apiserver, with a tiny HTTP
server as the container: replicas, scaling, rolling template changes, SIGTERM, status."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from process_runner import harness
from process_runner.kubectl import kubectl
from process_runner.pod import (
    ContainerRun,
    Terminated,
    UnsupportedTemplate,
    local_argv,
    local_json,
    local_path,
    plan_pod,
    pod_status,
    template_hash,
    termination_message,
)

# Serves /readyz with the content of the mounted file named by $GREETING_FILE, on $PORT; on
# SIGTERM it logs and exits 0.
SERVER = textwrap.dedent(
    """
    import http.server, os, signal, sys
    body = open(os.environ["GREETING_FILE"]).read().encode()
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    def bye(*_):
        print("got SIGTERM", flush=True); sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
    """
)
SELECTOR = "e2e.streamvane.io/runner-test=yes"
# Leaves a message where kubelet would read it (the container's terminationMessagePath,
# named by $MESSAGE_FILE), then exits 3: a worker that cannot start.
CRASHER = "import os, sys; open(os.environ['MESSAGE_FILE'], 'w').write('no broker'); sys.exit(3)"


def deployment(name: str, greeting: str, replicas: int) -> dict[str, Any]:
    labels = {"e2e.streamvane.io/runner-test": "yes", "app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "web",
                            "image": "python:3.11",
                            "command": ["python", "-c", SERVER],
                            "env": [
                                {"name": "GREETING_FILE", "value": "/etc/greeting/text"},
                                {
                                    "name": "POD",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                            ],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": "http"},
                                "periodSeconds": 1,
                            },
                            "volumeMounts": [{"name": "greeting", "mountPath": "/etc/greeting"}],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "greeting",
                            "configMap": {
                                "name": name,
                                "items": [{"key": "greeting", "path": "text"}],
                            },
                        }
                    ],
                },
            },
        },
    }


def config_map(name: str, greeting: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"greeting": greeting},
    }


class Env:
    def __init__(self, kubeconfig: Path, namespace: str, runner: harness.Background) -> None:
        self.kubeconfig, self.namespace, self.runner = kubeconfig, namespace, runner

    def apply(self, *docs: dict[str, Any]) -> None:
        stdin = yaml.safe_dump_all(docs)
        result = kubectl(self.kubeconfig, "apply", "-n", self.namespace, "-f", "-", stdin=stdin)
        assert result.returncode == 0, result.stderr

    def status(self, name: str) -> dict[str, Any]:
        result = kubectl(
            self.kubeconfig, "get", "deployment", name, "-n", self.namespace, "-o", "json"
        )
        return dict(json.loads(result.stdout).get("status") or {})

    def pods(self) -> dict[str, dict[str, Any]]:
        result = kubectl(self.kubeconfig, "get", "pods", "-n", self.namespace, "-o", "json")
        assert result.returncode == 0, result.stderr
        return {p["metadata"]["name"]: p for p in json.loads(result.stdout)["items"]}

    def wait_status(self, name: str, **expected: int) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            status = self.status(name)
            return status if all(status.get(k, 0) == v for k, v in expected.items()) else None

        try:
            found = harness.wait_for(f"{name} status {expected}", matches, 30)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.runner.tail()}") from None
        assert found is not None
        return found


@pytest.fixture
def env(stack: Any, tmp_path: Path) -> Iterator[Env]:
    namespace = f"runner-{uuid.uuid4().hex[:8]}"
    assert kubectl(stack.kubeconfig, "create", "namespace", namespace).returncode == 0
    runner = harness.runner(
        stack.kubeconfig,
        [namespace],
        tmp_path / "runner.log",
        tmp_path / "replicas",
        selector=SELECTOR,
        port_env="PORT",
        max_grace_s=5,
    )
    runner.start()
    try:
        yield Env(stack.kubeconfig, namespace, runner)
    finally:
        runner.stop()
        kubectl(
            stack.kubeconfig,
            "delete",
            "deployments,configmaps,pods",
            "--all",
            "-n",
            namespace,
            "--wait=false",
        )
        kubectl(stack.kubeconfig, "delete", "namespace", namespace, "--wait=false")


@pytest.mark.e2e
def test_runner_follows_scale_template_and_deletion_when_deployment_changes(env: Env) -> None:
    env.apply(config_map("web", "hello"), deployment("web", "hello", replicas=1))
    env.wait_status("web", replicas=1, readyReplicas=1, updatedReplicas=1, observedGeneration=1)

    env.apply(deployment("web", "hello", replicas=3))
    env.wait_status("web", replicas=3, readyReplicas=3, observedGeneration=2)

    env.apply(deployment("web", "hello", replicas=1))
    env.wait_status("web", replicas=1, readyReplicas=1, observedGeneration=3)
    harness.wait_for(
        "SIGTERM on scale-down", lambda: env.runner.tail(200).count("replica_stopped") >= 2, 15
    )

    changed = deployment("web", "hello", replicas=1)
    changed["spec"]["template"]["metadata"]["annotations"] = {"rev": "2"}
    env.apply(changed)
    env.wait_status("web", replicas=1, readyReplicas=1, updatedReplicas=1, observedGeneration=4)
    log = env.runner.tail(400)
    assert "replaced by a new template" in log
    # Rolling: the new replica was started before the old one was told to stop.
    assert log.rindex("replica_started") < log.rindex("replaced by a new template")

    result = kubectl(env.kubeconfig, "delete", "deployment", "web", "-n", env.namespace)
    assert result.returncode == 0
    harness.wait_for("replicas stopped", lambda: "deployment deleted" in env.runner.tail(400), 15)


@pytest.mark.e2e
def test_runner_reports_pods_like_kubelet_when_replicas_run_and_crash(env: Env) -> None:
    env.apply(config_map("web", "hi"), deployment("web", "hi", replicas=1))
    env.wait_status("web", readyReplicas=1)

    def running() -> dict[str, Any] | None:
        pods = list(env.pods().values())
        statuses = [c for p in pods for c in p.get("status", {}).get("containerStatuses", [])]
        return pods[0] if len(pods) == 1 and statuses and statuses[0]["ready"] else None

    pod = harness.wait_for("a ready Pod", running, 15)
    assert pod["metadata"]["labels"]["app"] == "web"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]

    crasher = deployment("crash", "x", replicas=1)
    container = crasher["spec"]["template"]["spec"]["containers"][0]
    container.update(
        command=["python", "-c", CRASHER],
        env=[{"name": "MESSAGE_FILE", "value": "/dev/termination-log"}],
    )
    del container["readinessProbe"], container["volumeMounts"]
    del crasher["spec"]["template"]["spec"]["volumes"]
    env.apply(crasher)

    def crash_looping() -> dict[str, Any] | None:
        for p in env.pods().values():
            if p["metadata"]["labels"]["app"] != "crash":
                continue
            (status,) = p.get("status", {}).get("containerStatuses") or [{}]
            waiting = status.get("state", {}).get("waiting", {})
            if waiting.get("reason") == "CrashLoopBackOff" and status["restartCount"] >= 1:
                return p
        return None

    crashed = harness.wait_for("a Pod in CrashLoopBackOff, restarted", crash_looping, 30)
    (status,) = crashed["status"]["containerStatuses"]
    terminated = status["lastState"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    assert terminated["message"] == "no broker"
    assert status["ready"] is False
    # Restarted in the same Pod (restartCount counts there), as kubelet does: one Pod for
    # the one replica.
    assert [p for p in env.pods() if p.startswith("crash-")] == [crashed["metadata"]["name"]]

    kubectl(env.kubeconfig, "delete", "deployment", "crash", "-n", env.namespace)
    harness.wait_for(
        "the crashed Pod deleted with its Deployment",
        lambda: not [p for p in env.pods() if p.startswith("crash-")],
        15,
    )


@pytest.mark.e2e
def test_runner_serves_probes_on_the_replica_port_with_materialized_config(
    env: Env, tmp_path: Path
) -> None:
    env.apply(config_map("web", "hello from a ConfigMap"), deployment("web", "x", replicas=1))
    env.wait_status("web", readyReplicas=1)

    port = int(env.runner.tail(200).split("port=")[-1].split()[0])
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").text == "hello from a ConfigMap"


@pytest.mark.e2e
def test_runner_stops_every_replica_when_it_exits(env: Env) -> None:
    env.apply(config_map("web", "hi"), deployment("web", "hi", replicas=2))
    env.wait_status("web", readyReplicas=2)
    ports = [
        int(line.split("port=")[1].split()[0])
        for line in env.runner.tail(200).splitlines()
        if "replica_started" in line
    ]

    assert env.runner.stop() == 0

    for port in ports:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)


def test_plan_pod_maps_python_and_mount_paths_when_template_is_a_worker() -> None:
    plan = plan_pod(deployment("web", "x", replicas=1)["spec"]["template"])
    mounts = {"/etc/greeting": Path("/tmp/r/volumes/greeting")}

    assert local_argv(plan.container.argv, mounts, {})[0] == sys.executable
    assert local_path("/etc/greeting/text", mounts) == "/tmp/r/volumes/greeting/text"
    assert local_path("/etc/greetings", mounts) == "/etc/greetings"
    assert plan.container.readiness is not None and plan.container.readiness.path == "/readyz"
    assert plan.grace_s == 5


def test_local_json_maps_nested_string_values_under_mounts_when_config_names_files() -> None:
    config = {"tls": {"caFile": "/etc/ca/ca.crt", "other": "/etc/cab"}, "n": 3, "l": ["/etc/ca"]}
    mounts = {"/etc/ca": Path("/tmp/r/volumes/ca")}

    local = json.loads(local_json(json.dumps(config).encode(), mounts))

    assert local == {
        "tls": {"caFile": "/tmp/r/volumes/ca/ca.crt", "other": "/etc/cab"},
        "n": 3,
        "l": ["/tmp/r/volumes/ca"],
    }


def test_local_argv_expands_env_references_when_defined_like_kubelet() -> None:
    argv = ("python", "--port=$(PORT)", "--name=$(MISSING)", "--price=$$(PORT)", "/etc/x/$(PORT)")

    local = local_argv(argv, {"/etc/x": Path("/tmp/x")}, {"PORT": "8081"})

    assert local[1:] == ["--port=8081", "--name=$(MISSING)", "--price=$(PORT)", "/tmp/x/8081"]


def test_plan_pod_refuses_templates_when_runner_cannot_imitate_them() -> None:
    template = deployment("web", "x", replicas=1)["spec"]["template"]
    template["spec"]["containers"].append(template["spec"]["containers"][0])
    with pytest.raises(UnsupportedTemplate, match="exactly one container"):
        plan_pod(template)
    no_command = deployment("web", "x", replicas=1)["spec"]["template"]
    del no_command["spec"]["containers"][0]["command"]
    with pytest.raises(UnsupportedTemplate, match="no command"):
        plan_pod(no_command)


def test_template_hash_changes_only_when_template_changes() -> None:
    template = deployment("web", "x", replicas=1)["spec"]["template"]
    same = json.loads(json.dumps(template))
    changed = json.loads(json.dumps(template))
    changed["metadata"]["annotations"] = {"rev": "2"}

    assert template_hash(template) == template_hash(same) != template_hash(changed)


def test_termination_message_falls_back_to_the_log_when_policy_says_so_and_file_is_empty() -> None:
    log = b"".join(f"line {i}\n".encode() for i in range(200))

    assert termination_message(b"why", log, 3, "FallbackToLogsOnError") == "why"
    assert termination_message(b"", log, 3, "File") == ""
    fallback = termination_message(b"", log, 3, "FallbackToLogsOnError")
    assert fallback.startswith("line 120\n") and fallback.endswith("line 199\n")
    assert termination_message(b"", log, 0, "FallbackToLogsOnError") == ""


def test_pod_status_waits_in_crash_loop_with_last_termination_when_container_is_down() -> None:
    plan = plan_pod(deployment("web", "x", replicas=1)["spec"]["template"])
    last = Terminated(3, "no broker", "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z")

    status = pod_status(plan.container, "img", ContainerRun(None, False, True, 2, last, 4))

    (container,) = status["containerStatuses"]
    assert container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert container["restartCount"] == 2 and container["started"] is False
    assert container["lastState"]["terminated"]["exitCode"] == 3
    assert container["lastState"]["terminated"]["message"] == "no broker"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "False"
