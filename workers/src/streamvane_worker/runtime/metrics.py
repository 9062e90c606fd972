"""Prometheus metrics of one worker, in their own registry (served on /metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    messages_in: Counter
    messages_out: Counter
    messages_failed: Counter
    messages_dead_lettered: Counter
    batch_size: Histogram
    end_to_end_latency: Histogram
    inference_latency: Histogram
    in_flight: Gauge
    redeliveries: Counter
    retries: Counter
    quarantined: Counter
    oldest_in_flight_age: Gauge
    in_flight_limit: Gauge


def create_metrics(pipeline: str, stage: str) -> Metrics:
    registry = CollectorRegistry()
    labels = ["pipeline", "stage"]

    def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
        return Counter(f"streamvane_worker_{name}", doc, [*labels, *extra], registry=registry)

    def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(
            f"streamvane_worker_{name}", doc, labels, buckets=buckets, registry=registry
        )

    def gauge(name: str, doc: str) -> Gauge:
        return Gauge(f"streamvane_worker_{name}", doc, labels, registry=registry)

    return Metrics(
        registry=registry,
        messages_in=counter("messages_in", "Messages received from the input topic."),
        messages_out=counter("messages_out", "Results acknowledged by the broker."),
        messages_failed=counter(
            "messages_failed",
            "Messages that failed and are delivered again later (re-published or nacked).",
            ("reason",),
        ),
        messages_dead_lettered=counter(
            "messages_dead_lettered", "Messages published to the dead-letter topic.", ("reason",)
        ),
        batch_size=histogram("batch_size", "Messages per micro-batch.", _BATCH_BUCKETS),
        end_to_end_latency=histogram(
            "end_to_end_latency_seconds",
            "From the input's publish time to its acknowledgement.",
            _LATENCY_BUCKETS,
        ),
        inference_latency=histogram(
            "inference_latency_seconds", "One model call for a micro-batch.", _LATENCY_BUCKETS
        ),
        in_flight=gauge("in_flight_messages", "Messages received and not yet acked or nacked."),
        redeliveries=counter(
            "redeliveries",
            "Messages received again: redelivered by the broker or after a worker died.",
        ),
        retries=counter(
            "retries",
            "Batch steps retried in place after an infrastructure failure (not counted "
            "against the messages' redelivery budget).",
            ("reason",),
        ),
        quarantined=counter(
            "messages_quarantined",
            "Messages dead-lettered as crash-loop: workers died holding them maxCrashes times.",
        ),
        oldest_in_flight_age=gauge(
            "oldest_in_flight_age_seconds", "Age of the oldest message received and not settled."
        ),
        in_flight_limit=gauge(
            "in_flight_batches_limit", "Adaptive limit of batches in flight (AIMD)."
        ),
    )
