"""The admin client against a Pulsar that speaks TLS only and requires a JWT."""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import pytest

from streamvane_operator.pulsar.admin import PulsarAdmin, TopicName
from streamvane_operator.pulsar.errors import PulsarMisconfigured, PulsarUnauthorized
from streamvane_stack.pki import ServingCert
from streamvane_stack.stack import SecurePulsar

pytestmark = pytest.mark.integration


def admin(pulsar: SecurePulsar, token: str | None, ca: str | None) -> PulsarAdmin:
    return PulsarAdmin(pulsar.admin_url, token=token, ca=ca, attempts=1)


def test_admin_creates_a_topology_when_it_has_the_token_and_the_ca(
    secure_pulsar: SecurePulsar,
) -> None:
    client = admin(
        secure_pulsar, secure_pulsar.tokens.token(), secure_pulsar.tls.ca_cert.read_text()
    )
    tenant, namespace = "it-secure", f"ns-{uuid.uuid4().hex[:8]}"
    topic = TopicName(tenant, namespace, "items")
    try:
        assert client.clusters() == ["standalone"]
        client.create_tenant(tenant, ["standalone"])
        client.create_namespace(tenant, namespace)
        client.create_topic(topic, partitions=0)
        client.create_subscription(topic, "workers", earliest=True)
        assert client.topics(tenant, namespace) == {"items": 0}
        assert client.subscriptions(topic) == ["workers"]
    finally:
        client.delete_topic(topic, partitioned=False)
        client.close()


@pytest.mark.parametrize("token", ["other-key", "expired", None], ids=str)
def test_admin_raises_unauthorized_when_the_token_is_wrong_expired_or_missing(
    secure_pulsar: SecurePulsar, token: str | None
) -> None:
    tokens = secure_pulsar.tokens
    jwt = {
        "other-key": tokens.token(key=b"k" * 32),
        "expired": tokens.token(expires_in=datetime.timedelta(seconds=-1)),
        None: None,
    }[token]
    client = admin(secure_pulsar, jwt, secure_pulsar.tls.ca_cert.read_text())

    with pytest.raises(PulsarUnauthorized, match="HTTP 401"):
        client.tenants()


def test_admin_raises_misconfigured_when_the_brokers_ca_is_not_trusted(
    secure_pulsar: SecurePulsar, tmp_path: Path
) -> None:
    other = ServingCert(tmp_path, "other")
    other.ensure()

    for ca in (other.ca_cert.read_text(), None):
        client = admin(secure_pulsar, secure_pulsar.tokens.token(), ca)
        with pytest.raises(PulsarMisconfigured, match="TLS certificate is not trusted"):
            client.clusters()
