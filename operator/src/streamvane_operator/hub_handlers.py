"""kopf handlers of the hub (``--mode hub``): placed Pipelines and Regions. Thin: the
decisions live in ``streamvane_operator.reconcile.hub`` and ``streamvane_operator.rollout``."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes.client import Configuration

from streamvane_operator.api.common import API_VERSION, GROUP, VERSION
from streamvane_operator.config import OperatorConfig
from streamvane_operator.handlers import (
    PIPELINES,
    _connection_info,
    _dump,
    _post,
    placed,
)
from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.reconcile import hub, pipeline
from streamvane_operator.reconcile.common import RetryLater

REGIONS = (GROUP, VERSION, "regions")


def register(
    registry: kopf.OperatorRegistry,
    deps: hub.HubDeps,
    config: OperatorConfig,
    credentials: Configuration | None = None,
) -> None:
    """Attach the hub's handlers to ``registry``."""

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{GROUP}/hub-finalizer"
        settings.execution.max_workers = config.max_workers
        settings.scanning.disabled = bool(config.namespaces)
        settings.posting.level = logging.ERROR

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if credentials is None:
            return kopf.login_via_client(**kwargs)
        return _connection_info(credentials)

    def rollout_step(
        body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, logger: kopf.Logger
    ) -> None:
        owner = pipeline.owner_of(meta["name"], meta["namespace"], meta["uid"])
        outcome = hub.reconcile_hub(
            deps, owner, dict(spec), int(meta.get("generation", 0)), dict(status)
        )
        ref = ObjectRef(API_VERSION, pipeline.KIND, meta["namespace"], meta["name"])
        deps.kube.patch_status(ref, _dump(outcome.status))
        _post(body, outcome.events, logger)
        if outcome.problem is not None:
            logger.warning("%s", outcome.problem.message)

    @kopf.timer(*PIPELINES, interval=config.hub_tick_s, when=placed, registry=registry)
    def rollout_tick(
        body: kopf.Body,
        spec: kopf.Spec,
        meta: kopf.Meta,
        status: kopf.Status,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        # The rollout advances only on this tick (waves wait, bake and time out on the clock):
        # one step at a time per Pipeline, never two racing on the same status.
        rollout_step(body, spec, meta, status, logger)

    @kopf.on.delete(*PIPELINES, when=placed, registry=registry)
    def delete_placed_pipeline(
        body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, logger: kopf.Logger, **_: Any
    ) -> None:
        owner = pipeline.owner_of(meta["name"], meta["namespace"], meta["uid"])
        try:
            events = hub.delete_hub_pipeline(deps, owner, dict(spec))
        except RetryLater as e:
            raise kopf.TemporaryError(str(e), delay=e.delay_s) from e
        _post(body, events, logger)

    @kopf.on.resume(*REGIONS, registry=registry)
    @kopf.on.create(*REGIONS, registry=registry)
    @kopf.timer(*REGIONS, interval=config.hub_tick_s * 3, registry=registry)
    def probe_region(spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
        patch.status.update(_dump(hub.probe_region(deps, dict(spec))))
