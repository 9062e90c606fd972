"""Readings of the autoscaler's sources, and the policy's Signals derived from two of them.

Pulsar: a topic's stats (``partitioned-stats`` add up the partitions). Counters
(``msgInCounter``) move with every message, while the broker refreshes its rates
(``msgRateIn``, ``msgRateOut``) only every ``statsUpdateFrequencyInSecs`` (60 s by default):
rates come from counter deltas between two readings, Pulsar's rates serve for the first.

Triton: Prometheus text from its metrics endpoint; cumulative queue time and successful
requests per model, so a delta gives the mean queue time per request since the last reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from streamvane_operator.scaling.errors import MetricsUnavailable
from streamvane_operator.scaling.policy import Signals

QUEUE_METRIC = "nv_inference_queue_duration_us"
SUCCESS_METRIC = "nv_inference_request_success"


@dataclass(frozen=True)
class SubscriptionReading:
    """One stage's input topic and subscription at ``at`` (seconds, steady clock)."""

    at: float
    backlog: int
    unacked: int
    """Clamped at 0: with batch-index acks Pulsar's count can go negative."""
    msg_in_counter: int
    msg_out_counter: int
    """Messages the subscription dispatched to consumers, ever (messages, not batches)."""
    rate_in: float
    """Pulsar's msgRateIn (refreshed by the broker periodically)."""
    rate_out: float
    """The sum of the subscription's consumers' msgRateOut (refreshed likewise)."""
    consumers: int


def subscription_reading(
    stats: Mapping[str, Any], subscription: str, at: float
) -> SubscriptionReading | None:
    """From a topic's (partitioned-)stats; None when the subscription does not exist."""
    sub = (stats.get("subscriptions") or {}).get(subscription)
    if sub is None:
        return None
    consumers = sub.get("consumers") or []
    return SubscriptionReading(
        at=at,
        backlog=max(0, int(sub.get("msgBacklog") or 0)),
        unacked=max(0, int(sub.get("unackedMessages") or 0)),
        msg_in_counter=int(stats.get("msgInCounter") or 0),
        msg_out_counter=int(sub.get("msgOutCounter") or 0),
        rate_in=max(0.0, float(stats.get("msgRateIn") or 0.0)),
        rate_out=sum(max(0.0, float(c.get("msgRateOut") or 0.0)) for c in consumers),
        consumers=len(consumers),
    )


@dataclass(frozen=True)
class ModelCounters:
    """Cumulative counters of one model on one Triton server (all versions)."""

    queue_us: float
    success: float


def parse_triton_metrics(text: str) -> dict[str, ModelCounters]:
    """Model name -> its queue time and successful requests, from Triton's metrics text."""
    queue: dict[str, float] = {}
    success: dict[str, float] = {}
    # By family: the parser names counter samples <family>_total.
    for family in text_string_to_metric_families(text):
        into = {QUEUE_METRIC: queue, SUCCESS_METRIC: success}.get(family.name)
        if into is None:
            continue
        for sample in family.samples:
            model = sample.labels.get("model")
            if model is not None:
                into[model] = into.get(model, 0.0) + sample.value
    return {m: ModelCounters(queue.get(m, 0.0), success.get(m, 0.0)) for m in success}


def read_triton_metrics(http: httpx.Client, url: str) -> dict[str, ModelCounters]:
    """GET and parse; MetricsUnavailable when the endpoint cannot be read or parsed."""
    try:
        response = http.get(url)
        response.raise_for_status()
        return parse_triton_metrics(response.text)
    except (httpx.HTTPError, ValueError) as e:
        raise MetricsUnavailable(f"Triton metrics at {url}: {e}") from e


def queue_us_per_request(before: ModelCounters | None, now: ModelCounters | None) -> float | None:
    """Mean queue time of the requests served between two readings; None without requests
    (or after a server restart reset the counters)."""
    if before is None or now is None:
        return None
    requests = now.success - before.success
    if requests <= 0 or now.queue_us < before.queue_us:
        return None
    return (now.queue_us - before.queue_us) / requests


def signals(
    before: SubscriptionReading | None,
    now: SubscriptionReading,
    replicas: int,
    ready_replicas: int,
    queue_us: float | None = None,
) -> Signals:
    """Rates from counter deltas when a previous reading exists (messages published to the
    topic, messages the subscription dispatched), Pulsar's own rates otherwise. Counters,
    unlike the backlog, count messages and not batches."""
    rate_in, rate_out = now.rate_in, now.rate_out
    if (
        before is not None
        and now.at > before.at
        and now.msg_in_counter >= before.msg_in_counter
        and now.msg_out_counter >= before.msg_out_counter
    ):
        elapsed = now.at - before.at
        rate_in = (now.msg_in_counter - before.msg_in_counter) / elapsed
        rate_out = (now.msg_out_counter - before.msg_out_counter) / elapsed
    return Signals(
        now=now.at,
        backlog=now.backlog,
        unacked=now.unacked,
        rate_in=rate_in,
        rate_out=rate_out,
        replicas=replicas,
        ready_replicas=ready_replicas,
        queue_us_per_request=queue_us,
    )


class MetricsReader:
    """Reads Triton metrics endpoints over one shared HTTP client."""

    def __init__(
        self, timeout_s: float = 3.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._http = httpx.Client(timeout=timeout_s, transport=transport)

    def __call__(self, url: str) -> dict[str, ModelCounters]:
        return read_triton_metrics(self._http, url)

    def close(self) -> None:
        self._http.close()
