from __future__ import annotations

from streamvane_worker.runtime.metrics import create_metrics


def test_metrics_carry_the_worker_prefix_when_registered() -> None:
    families = list(create_metrics("p", "s").registry.collect())
    names = {family.name for family in families}
    assert names and all(name.startswith("streamvane_worker_") for name in names), names
    for expected in (
        "streamvane_worker_in_flight_messages",
        "streamvane_worker_redeliveries",
        "streamvane_worker_retries",
        "streamvane_worker_messages_quarantined",
        "streamvane_worker_oldest_in_flight_age_seconds",
    ):
        assert expected in names
