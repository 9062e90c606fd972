"""Workers against a Pulsar that speaks TLS only and requires a JWT: they connect with the
token file and the CA, pick up a rotated token without a restart, and exit naming the cause
when the CA, the token or its file is wrong."""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pulsar
import pytest

from streamvane_stack.pki import ServingCert
from streamvane_stack.stack import SecurePulsar

from .pipeline import Collector, Topics, WorkerProcess, items, publish, worker_config

pytestmark = pytest.mark.integration

BATCH = 50


def secure_config(
    secure: SecurePulsar, topics: Topics, token_file: Path, ca: Path, **overrides: Any
) -> dict[str, Any]:
    pulsar_settings = {
        "serviceUrl": secure.service_url,
        "authTokenFile": str(token_file),
        "tlsCaFile": str(ca),
    }
    return worker_config(
        SimpleNamespace(pulsar_url=secure.service_url),
        topics,
        stage_type="passthrough",
        pulsar=pulsar_settings,
        **overrides,
    )


def write_token(path: Path, token: str) -> None:
    """Replace the file in one step, as the kubelet swaps a Secret volume's contents."""
    staged = path.with_suffix(".new")
    staged.write_text(token)
    os.replace(staged, path)


@pytest.fixture
def secure_client(secure_pulsar: SecurePulsar) -> Iterator[pulsar.Client]:
    client = pulsar.Client(
        secure_pulsar.service_url,
        authentication=pulsar.AuthenticationToken(secure_pulsar.tokens.token()),
        tls_trust_certs_file_path=str(secure_pulsar.tls.ca_cert),
        tls_validate_hostname=True,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
    )
    yield client
    client.close()


def test_worker_relays_over_tls_and_keeps_working_when_its_token_rotates(
    secure_pulsar: SecurePulsar,
    secure_client: pulsar.Client,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    tokens, token_file = secure_pulsar.tokens, tmp_path / "token"
    lifetime = datetime.timedelta(seconds=15)
    first_expires = time.monotonic() + lifetime.total_seconds()
    write_token(token_file, tokens.token(expires_in=lifetime))
    topics = Topics.unique("it-secure")
    worker = WorkerProcess(
        secure_config(secure_pulsar, topics, token_file, secure_pulsar.tls.ca_cert), tmp_path
    ).start()
    workers.append(worker)
    worker.wait_started()
    out = Collector(secure_client, topics.output)

    publish(secure_client, topics.input, items(BATCH))
    assert len(out.until(BATCH, timeout=60)) == BATCH

    write_token(token_file, tokens.token(expires_in=datetime.timedelta(hours=1)))
    # Past the first token's expiry the broker challenges the connection (every
    # AUTH_REFRESH_CHECK_S); only a client that re-reads the file answers with a valid token.
    time.sleep(max(0.0, first_expires - time.monotonic()) + 3 * SecurePulsar.AUTH_REFRESH_CHECK_S)
    publish(secure_client, topics.input, items(BATCH, start=BATCH))

    assert len(out.until(2 * BATCH, timeout=60)) == 2 * BATCH, worker.logs()
    assert sorted(out.ids()) == sorted(f"item-{i}" for i in range(2 * BATCH))
    assert worker.proc is not None and worker.proc.poll() is None


@pytest.mark.parametrize("wrong", ["untrusted-ca", "expired-token", "missing-token-file"])
def test_worker_exits_naming_the_cause_when_its_pulsar_credentials_cannot_work(
    secure_pulsar: SecurePulsar, workers: list[WorkerProcess], tmp_path: Path, wrong: str
) -> None:
    token_file, ca = tmp_path / "token", secure_pulsar.tls.ca_cert
    token = secure_pulsar.tokens.token
    if wrong == "untrusted-ca":
        other = ServingCert(tmp_path / "other", "other")
        other.ensure()
        ca = other.ca_cert
    if wrong != "missing-token-file":
        expires = datetime.timedelta(seconds=-1 if wrong == "expired-token" else 3600)
        write_token(token_file, token(expires_in=expires))
    config = secure_config(
        secure_pulsar, Topics.unique("it-secure"), token_file, ca, startupTimeoutS=3
    )

    worker = WorkerProcess(config, tmp_path).start()
    workers.append(worker)
    error = worker.startup_error()

    named = {
        "untrusted-ca": f"the CA in {ca} does not trust (unable to get local issuer certificate)",
        "expired-token": f"the token in {token_file} expired at",
        "missing-token-file": f"cannot read the token file {token_file}",
    }[wrong]
    assert error.startswith(f"Pulsar at {secure_pulsar.service_url}: "), error
    assert named in error, error
