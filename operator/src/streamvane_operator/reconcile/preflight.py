"""Preflight: before an edit re-applies workers, the broker and the models it points at answer.

Only what an edit changes is checked (a stage whose running config names another service URL,
Triton address or model than the new one); a new stage or Pipeline is not held back, its
workers report their own startup failures. When a check fails nothing is applied: the running
workers keep their config, and the Pipeline is Degraded (PreflightFailed) until a later
reconcile finds the target answering or the edit reverted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from streamvane_operator.api.common import Manifest, SecretKeyRef
from streamvane_operator.preflight.errors import PreflightError
from streamvane_operator.preflight.probes import ModelCheck
from streamvane_operator.reconcile.common import Preflight
from streamvane_operator.reconcile.status import Failure, Problem, stage_of
from streamvane_operator.render.worker import CONFIG_FILE_NAME
from streamvane_worker.config import WorkerConfig


@dataclass(frozen=True)
class Broker:
    service_url: str


@dataclass(frozen=True)
class Model:
    url: str
    model: str
    version: str
    tls: bool
    ca_secret: SecretKeyRef | None
    timeout_ms: int


Target = Broker | Model


def running_configs(observed: Sequence[Manifest]) -> dict[str, WorkerConfig]:
    """Stage -> the WorkerConfig its ConfigMap holds now (unparsable ones are left out)."""
    found = {}
    for obj in observed:
        if obj["kind"] != "ConfigMap":
            continue
        try:
            found[stage_of(obj)] = WorkerConfig.model_validate_json(
                (obj.get("data") or {})[CONFIG_FILE_NAME]
            )
        except (KeyError, ValidationError):
            continue
    return found


def targets(
    desired: Mapping[str, WorkerConfig],
    running: Mapping[str, WorkerConfig],
    ca_secrets: Mapping[str, SecretKeyRef | None],
    connect_ms: Mapping[str, int],
) -> list[Target]:
    """What to check before applying ``desired``: per stage that runs now, the broker if its
    service URL changes, the model if its server, name or version changes. ``ca_secrets`` and
    ``connect_ms``: per stage, the CA Secret and connect timeout of its backend."""
    found: list[Target] = []
    for stage, config in desired.items():
        before = running.get(stage)
        if before is None:
            continue
        if config.pulsar.service_url != before.pulsar.service_url:
            found.append(Broker(config.pulsar.service_url))
        new, old = config.inference, before.inference
        if new is None or new.backend != "triton":
            continue
        key = (new.triton_url, new.model_name, new.model_version)
        if old is None or key != (old.triton_url, old.model_name, old.model_version):
            found.append(
                Model(
                    new.triton_url,
                    new.model_name,
                    new.model_version,
                    new.tls,
                    ca_secrets.get(stage),
                    connect_ms.get(stage, 5000),
                )
            )
    return list(dict.fromkeys(found))


def problem(failures: Sequence[str]) -> Problem | None:
    """The Degraded reason for what failed; None when everything answered."""
    if not failures:
        return None
    return Problem(
        Failure.PREFLIGHT_FAILED,
        "; ".join(failures) + " (nothing was rolled; checked again at the next reconcile)",
    )


def run(
    preflight: Preflight, found: Sequence[Target], ca_pem: Mapping[SecretKeyRef, str]
) -> list[str]:
    """Check every target; the failure messages."""
    failures = []
    for target in found:
        try:
            if isinstance(target, Broker):
                preflight.broker(target.service_url)
            else:
                preflight.model(
                    ModelCheck(
                        target.url,
                        target.model,
                        target.version,
                        target.tls,
                        ca_pem.get(target.ca_secret) if target.ca_secret else None,
                        target.timeout_ms / 1000,
                    )
                )
        except PreflightError as e:
            failures.append(str(e))
    return failures
