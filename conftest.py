"""Session fixtures shared by unit, integration and e2e tests.

``stack`` gives integration and e2e tests the real local stack. It reuses a running stack
(``make stack-up``) and otherwise starts one, which it leaves running. Set
``STREAMVANE_REQUIRE_STACK=1`` (CI does) to turn a stack that cannot start into a failure
instead of a skip. ``secure_pulsar`` is a second Pulsar (TLS + JWT) that only the tests
needing it start, once per session.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from streamvane_stack import Endpoints, Stack
from streamvane_stack.pki import ServingCert
from streamvane_stack.stack import Pulsar, SecurePulsar, StackError, Triton


@pytest.fixture(scope="session")
def local_stack() -> Stack:
    """The running stack, started if needed. It is left running: other sessions may share it,
    and `make test` / `make stack-down` stop it."""
    stack = Stack()
    if not stack.is_ready():
        try:
            stack.up()
        except Exception as e:
            if os.environ.get("STREAMVANE_REQUIRE_STACK") == "1":
                raise
            pytest.skip(f"local stack unavailable: {e}")
    return stack


@pytest.fixture(scope="session")
def stack(local_stack: Stack) -> Endpoints:
    """Addresses of the running Pulsar, kube-apiserver and Triton."""
    return local_stack.endpoints


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _second_triton(tls: bool) -> Iterator[Triton]:
    """A tritonserver on free ports serving the stack's models; its gRPC over TLS if asked."""
    settings = dataclasses.replace(
        Stack().settings,
        run_name=f"run-triton-{uuid.uuid4().hex[:8]}",
        triton_http_port=_free_port(),
        triton_grpc_port=_free_port(),
        triton_metrics_port=_free_port(),
    )
    triton = Triton(settings, ServingCert(settings.run_dir / "tls", "triton") if tls else None)
    triton.prepare(lambda _: None)
    try:
        triton.start()
        triton.wait_ready(lambda _: None)
        yield triton
    finally:
        triton.daemon.stop()
        shutil.rmtree(settings.run_dir, ignore_errors=True)


@pytest.fixture
def private_triton(stack: Endpoints) -> Iterator[Triton]:
    """A second Triton that a test may kill: outage tests never disturb the shared one."""
    with _second_triton(tls=False) as triton:
        yield triton


@pytest.fixture(scope="session")
def tls_triton(stack: Endpoints) -> Iterator[Triton]:
    """A Triton whose gRPC endpoint is TLS only; ``tls_triton.tls.ca_cert`` signed its cert."""
    with _second_triton(tls=True) as triton:
        yield triton


@pytest.fixture(scope="session")
def secure_pulsar() -> Iterator[SecurePulsar]:
    """A Pulsar standalone on free ports that speaks TLS only and requires a JWT: its
    ``service_url`` / ``admin_url``, ``tls.ca_cert`` (the CA that signed its certificate) and
    ``tokens`` (mints superuser tokens). Started once per session, removed at its end."""
    settings = dataclasses.replace(
        Stack().settings, run_name=f"run-pulsar-secure-{uuid.uuid4().hex[:8]}"
    )
    pulsar = SecurePulsar(settings, tls_port=_free_port(), admin_tls_port=_free_port())
    try:
        try:
            pulsar.prepare(lambda _: None)
            pulsar.start()
            pulsar.wait_ready(lambda _: None)
        except (StackError, OSError) as e:
            if os.environ.get("STREAMVANE_REQUIRE_STACK") == "1":
                raise
            pytest.skip(f"TLS + token Pulsar unavailable: {e}")
        yield pulsar
    finally:
        pulsar.daemon.stop()


@pytest.fixture
def private_pulsar(stack: Endpoints) -> Iterator[Pulsar]:
    """A second Pulsar standalone on free ports and its own run directory, which a test may
    stop and restart (``daemon.stop()``, ``start()``, ``wait_ready``) without disturbing the
    stack's broker; its URL is ``pulsar://127.0.0.1:<settings.pulsar_port>``."""
    settings = dataclasses.replace(
        Stack().settings,
        run_name=f"run-pulsar-{uuid.uuid4().hex[:8]}",
        pulsar_port=_free_port(),
        pulsar_admin_port=_free_port(),
    )
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    broker = Pulsar(settings)
    broker.prepare(lambda _: None)
    try:
        broker.start()
        broker.wait_ready(lambda _: None)
        yield broker
    finally:
        broker.daemon.stop()
        shutil.rmtree(settings.run_dir, ignore_errors=True)
