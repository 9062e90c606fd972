"""A preflight fake for unit tests: answers from sets instead of the network."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamvane_operator.preflight.errors import PreflightError
from streamvane_operator.preflight.probes import ModelCheck


@dataclass
class FakePreflight:
    down_brokers: set[str] = field(default_factory=set)
    """Service URLs that do not answer."""
    missing_models: set[str] = field(default_factory=set)
    """Model names no server serves."""
    checked: list[str] = field(default_factory=list)

    def broker(self, service_url: str) -> None:
        self.checked.append(service_url)
        if service_url in self.down_brokers:
            raise PreflightError(f"Pulsar broker at {service_url} does not answer (fake)")

    def model(self, check: ModelCheck) -> None:
        self.checked.append(f"{check.url}/{check.model}")
        if check.model in self.missing_models:
            raise PreflightError(f"Triton at {check.url} does not serve model {check.model!r}")
