"""Readings of Pulsar stats and Triton metrics, and the rates derived from two readings."""

from __future__ import annotations

import httpx
import pytest

from streamvane_operator.scaling.errors import MetricsUnavailable
from streamvane_operator.scaling.signals import (
    MetricsReader,
    ModelCounters,
    parse_triton_metrics,
    queue_us_per_request,
    signals,
    subscription_reading,
)

STATS = {
    "msgRateIn": 12.5,
    "msgInCounter": 1000,
    "subscriptions": {
        "cu-embed": {
            "msgBacklog": 300,
            "msgOutCounter": 800,
            "unackedMessages": -4,
            "consumers": [{"msgRateOut": 3.0}, {"msgRateOut": 4.5}],
        }
    },
}
TRITON = """\
# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="minilm",version="1"} 40
nv_inference_request_success{model="minilm",version="2"} 60
nv_inference_request_success{model="other",version="1"} 7
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="minilm",version="1"} 1000
nv_inference_queue_duration_us{model="minilm",version="2"} 3000
nv_gpu_utilization{gpu_uuid="x"} 0.5
"""


def test_subscription_reading_clamps_negative_unacked_when_batch_index_acks_skew_it() -> None:
    reading = subscription_reading(STATS, "cu-embed", at=10.0)

    assert reading is not None
    assert (reading.backlog, reading.unacked, reading.consumers) == (300, 0, 2)
    assert (reading.rate_in, reading.rate_out, reading.msg_in_counter) == (12.5, 7.5, 1000)


def test_subscription_reading_is_none_when_the_subscription_is_missing() -> None:
    assert subscription_reading(STATS, "other", at=0.0) is None


def test_signals_use_counter_deltas_when_a_previous_reading_exists() -> None:
    before = subscription_reading(STATS, "cu-embed", at=10.0)
    later = dict(STATS, msgInCounter=1100)
    sub = dict(STATS["subscriptions"]["cu-embed"], msgBacklog=250, msgOutCounter=950)
    later["subscriptions"] = {"cu-embed": sub}
    now = subscription_reading(later, "cu-embed", at=15.0)
    assert now is not None

    s = signals(before, now, replicas=2, ready_replicas=2)

    assert s.rate_in == 20.0  # 100 new messages in 5 s
    assert s.rate_out == 30.0  # 150 dispatched in 5 s


def test_signals_use_pulsars_rates_when_there_is_no_previous_reading() -> None:
    now = subscription_reading(STATS, "cu-embed", at=15.0)
    assert now is not None

    s = signals(None, now, replicas=1, ready_replicas=1)

    assert (s.rate_in, s.rate_out) == (12.5, 7.5)


def test_parse_triton_metrics_sums_versions_when_a_model_has_several() -> None:
    counters = parse_triton_metrics(TRITON)

    assert counters["minilm"] == ModelCounters(queue_us=4000, success=100)
    assert counters["other"] == ModelCounters(queue_us=0, success=7)


def test_queue_us_per_request_is_the_delta_mean_when_requests_were_served() -> None:
    before, now = ModelCounters(4000, 100), ModelCounters(9000, 110)

    assert queue_us_per_request(before, now) == 500
    assert queue_us_per_request(now, now) is None
    assert queue_us_per_request(now, before) is None  # a restarted server reset its counters


def test_metrics_reader_raises_metrics_unavailable_when_the_endpoint_fails() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    reader = MetricsReader(transport=httpx.MockTransport(refuse))

    with pytest.raises(MetricsUnavailable, match="Triton metrics at http://t:8002/metrics"):
        reader("http://t:8002/metrics")
