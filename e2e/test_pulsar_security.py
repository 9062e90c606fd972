"""Pipelines on a Pulsar that speaks TLS only and requires a JWT: with the token and CA
Secrets the operator and the workers get through and items flow end to end; a wrong token, an
untrusted CA or a missing Secret each leave the Pipeline Degraded with a message naming the
cause, and no worker is started."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import pulsar
import pytest

from process_runner.fixtures import Cluster, cluster_fixture  # noqa: F401  (the cluster fixture)
from streamvane_stack.pki import ServingCert
from streamvane_stack.stack import SecurePulsar

pytestmark = pytest.mark.e2e

ITEMS = 100


def create_secret(cluster: Cluster, name: str, key: str, value: str, tmp_path: Path) -> None:
    source = tmp_path / f"{name}-{key}"
    source.write_text(value)
    created = cluster.kubectl("create", "secret", "generic", name, f"--from-file={key}={source}")
    assert created.returncode == 0, created.stderr


def secure_pipeline(
    cluster: Cluster, secure: SecurePulsar, name: str, token: str, ca: str
) -> dict[str, Any]:
    pipeline = cluster.sample("pipeline-pulsar-tls.yaml")
    pipeline["metadata"]["name"] = name
    pipeline["spec"]["pulsar"].update(
        serviceUrl=secure.service_url,
        adminUrl=secure.admin_url,
        authSecretRef={"name": token, "key": "token"},
        tls={"caSecretRef": {"name": ca, "key": "ca.crt"}},
    )
    return pipeline


def test_pipeline_relays_items_when_it_has_the_token_and_the_ca(
    cluster: Cluster, secure_pulsar: SecurePulsar, tmp_path: Path
) -> None:
    token, ca = secure_pulsar.tokens.token(), secure_pulsar.tls.ca_cert
    create_secret(cluster, "pulsar-token", "token", token, tmp_path)
    create_secret(cluster, "pulsar-ca", "ca.crt", ca.read_text(), tmp_path)
    pipeline = secure_pipeline(cluster, secure_pulsar, "secure-relay", "pulsar-token", "pulsar-ca")
    assert cluster.apply(pipeline).returncode == 0
    assert cluster.wait_ready("secure-relay", timeout_s=120)["status"]["stagesReady"] == "2/2"

    secure = dataclasses.replace(
        cluster,
        pulsar_url=secure_pulsar.service_url,
        pulsar_client_options={
            "authentication": pulsar.AuthenticationToken(token),
            "tls_trust_certs_file_path": str(ca),
            "tls_validate_hostname": True,
        },
    )
    secure.publish("secure-in", ({"id": f"s-{i:03d}", "title": "clip"} for i in range(ITEMS)))
    received = secure.consume("secure-out", ITEMS, timeout_s=120)

    assert sorted(doc["id"] for doc in received) == [f"s-{i:03d}" for i in range(ITEMS)]


def test_pipeline_is_degraded_naming_the_cause_when_its_pulsar_credentials_are_wrong(
    cluster: Cluster, secure_pulsar: SecurePulsar, tmp_path: Path
) -> None:
    tokens, ca = secure_pulsar.tokens, secure_pulsar.tls.ca_cert.read_text()
    other_ca = ServingCert(tmp_path / "other-ca", "other")
    other_ca.ensure()
    create_secret(cluster, "good-token", "token", tokens.token(), tmp_path)
    create_secret(cluster, "forged-token", "token", tokens.token(key=b"k" * 32), tmp_path)
    create_secret(cluster, "pulsar-ca", "ca.crt", ca, tmp_path)
    create_secret(cluster, "other-ca", "ca.crt", other_ca.ca_cert.read_text(), tmp_path)
    cases = {
        # name: (token Secret, CA Secret), condition reason, words the message must contain
        "wrong-token": (
            ("forged-token", "pulsar-ca"),
            "PulsarUnauthorized",
            ["HTTP 401", "authSecretRef"],
        ),
        "untrusted-ca": (
            ("good-token", "other-ca"),
            "PulsarTLSFailed",
            ["not trusted", "caSecretRef"],
        ),
        "missing-secret": (
            ("good-token", "no-such-ca"),
            "SecretNotFound",
            [f"spec.pulsar.tls.caSecretRef: Secret {cluster.namespace}/no-such-ca"],
        ),
    }
    for name, ((token, ca_secret), _, _) in cases.items():
        pipeline = secure_pipeline(cluster, secure_pulsar, name, token, ca_secret)
        assert cluster.apply(pipeline).returncode == 0

    for name, (_, reason, words) in cases.items():
        degraded = cluster.wait(
            f"Pipeline {name} Degraded", functools.partial(degraded_condition, cluster, name), 60
        )
        assert degraded is not None and degraded["reason"] == reason, degraded
        assert all(word in degraded["message"] for word in words), degraded["message"]
    assert cluster.items("deployments") == {}


def degraded_condition(cluster: Cluster, name: str) -> dict[str, Any] | None:
    condition = cluster.condition(name, "Degraded")
    return condition if condition and condition["status"] == "True" else None
