"""The preflight's wire formats and broker addresses (no network but a closed local port)."""

from __future__ import annotations

import socket

import pytest

from streamvane_operator.preflight.errors import PreflightError
from streamvane_operator.preflight.probes import (
    broker_hosts,
    check_broker,
    model_ready_request,
    model_ready_response,
)


def test_broker_hosts_lists_every_host_with_default_ports_when_url_has_several() -> None:
    assert broker_hosts("pulsar://a:6650,b") == [("a", 6650), ("b", 6650)]
    assert broker_hosts("pulsar+ssl://broker.svc") == [("broker.svc", 6651)]
    assert broker_hosts("pulsar://127.0.0.1:20601/") == [("127.0.0.1", 20601)]


def test_model_ready_request_frames_name_and_version_as_grpc_protobuf() -> None:
    assert model_ready_request("m", "") == b"\x00\x00\x00\x00\x03\x0a\x01m"
    assert model_ready_request("m", "2") == b"\x00\x00\x00\x00\x06\x0a\x01m\x12\x012"


def test_model_ready_response_reads_ready_when_flag_is_set() -> None:
    assert model_ready_response(b"\x00\x00\x00\x00\x02\x08\x01") is True
    assert model_ready_response(b"\x00\x00\x00\x00\x00") is False
    with pytest.raises(ValueError):
        model_ready_response(b"")


def test_check_broker_names_the_url_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PreflightError, match=f"pulsar://127.0.0.1:{port} does not answer"):
        check_broker(f"pulsar://127.0.0.1:{port}", timeout_s=1)
