"""The local Pulsar is real: the binary protocol and the admin REST API both answer."""

from __future__ import annotations

import uuid

import httpx
import pulsar

from streamvane_stack import Endpoints


def test_pulsar_delivers_produced_messages_when_consumed_in_order(stack: Endpoints) -> None:
    topic = f"persistent://public/default/stack-{uuid.uuid4().hex[:8]}"
    client = pulsar.Client(stack.pulsar_url)
    try:
        consumer = client.subscribe(
            topic, "probe", initial_position=pulsar.InitialPosition.Earliest
        )
        producer = client.create_producer(topic)
        sent = [f"message-{i}".encode() for i in range(20)]
        for payload in sent:
            producer.send(payload)
        received = []
        for _ in sent:
            message = consumer.receive(timeout_millis=10_000)
            received.append(message.data())
            consumer.acknowledge(message)
        assert received == sent
    finally:
        client.close()


def test_pulsar_admin_creates_tenant_namespace_and_topic_when_asked(stack: Endpoints) -> None:
    suffix = uuid.uuid4().hex[:8]
    tenant, namespace, topic = f"t-{suffix}", f"t-{suffix}/ns", f"persistent://t-{suffix}/ns/items"
    with httpx.Client(base_url=stack.pulsar_admin_url, timeout=10.0) as admin:
        clusters = admin.get("/admin/v2/clusters").json()
        admin.put(
            f"/admin/v2/tenants/{tenant}", json={"allowedClusters": clusters}
        ).raise_for_status()
        admin.put(f"/admin/v2/namespaces/{namespace}").raise_for_status()
        admin.put(f"/admin/v2/persistent/{namespace}/items/partitions", json=2).raise_for_status()

        assert tenant in admin.get("/admin/v2/tenants").json()
        assert namespace in admin.get(f"/admin/v2/namespaces/{tenant}").json()
        metadata = admin.get(f"/admin/v2/persistent/{namespace}/items/partitions").json()
        assert metadata["partitions"] == 2
        assert topic in admin.get(f"/admin/v2/persistent/{namespace}/partitioned").json()
