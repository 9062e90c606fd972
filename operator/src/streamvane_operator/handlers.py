"""kopf handlers: parse what kopf hands over, call reconcile, write status, map failures.

Nothing here decides anything; the decisions live in ``streamvane_operator.reconcile``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, cast

import kopf
from kubernetes.client import Configuration
from pydantic import BaseModel

from streamvane_operator.api.common import API_VERSION, GROUP, VERSION, Manifest
from streamvane_operator.api.pipeline import PipelineStatus
from streamvane_operator.coalesce import Coalescer, KeyedLocks, LastSeen
from streamvane_operator.config import OperatorConfig
from streamvane_operator.diffbase import DigestDiffBaseStorage
from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.kube.errors import KubeError, KubeUnavailable
from streamvane_operator.reconcile import autoscale, backend, pipeline, serving
from streamvane_operator.reconcile.common import Deps, Events, Outcome, RetryLater
from streamvane_operator.reconcile.status import (
    deployment_ready,
    stage_of,
    with_current_foreign_conditions,
    worker_failure,
)
from streamvane_operator.render.labels import MANAGED_BY, PIPELINE_LABEL, Owner

PIPELINES = (GROUP, VERSION, "pipelines")
BACKENDS = (GROUP, VERSION, "inferencebackends")
WORKER_DEPLOYMENTS = ("apps", "v1", "deployments")
MAX_ERROR_MESSAGE = 4096
WORKER_PODS = ("", "v1", "pods")
WORKER_CHILDREN = (
    ("", "v1", "configmaps"),
    ("", "v1", "services"),
    ("policy", "v1", "poddisruptionbudgets"),
)
INDEX = "pipelines_by_backend"
"""kopf index: (namespace, InferenceBackend name) -> Pipelines whose stages use it."""
WORKER_LABELS: dict[str, Any] = {
    "app.kubernetes.io/managed-by": MANAGED_BY,
    PIPELINE_LABEL: kopf.PRESENT,
}
log = logging.getLogger(__name__)


PipelineReconciler = Callable[
    [Deps, Owner, Mapping[str, Any], int, Mapping[str, Any] | None], Outcome[PipelineStatus]
]


class CurrentReconciles:
    """Reconciles of a Pipeline as the API server has it now, one at a time per Pipeline, each
    writing its status before the next starts. Every path takes this one (the create, update
    and resume handlers, the resync, the watches' asks): overlapping reconciles could finish
    in either order, and kopf writes a handler's status only after it returns, so the older
    one's status (workers not ready yet) overwrote the newer one's until the full resync."""

    def __init__(
        self, deps: Deps, reconcile: PipelineReconciler = pipeline.reconcile_pipeline
    ) -> None:
        self._deps = deps
        self._reconcile = reconcile
        self._locks = KeyedLocks()

    def run(self, namespace: str, name: str) -> tuple[Manifest, Outcome[PipelineStatus]] | None:
        """Reconcile and write the status; None if the Pipeline is gone or being deleted."""
        ref = ObjectRef(API_VERSION, pipeline.KIND, namespace, name)
        kube = self._deps.kube
        with self._locks.hold((namespace, name)):
            parent = kube.get(ref)
            if parent is None or parent["metadata"].get("deletionTimestamp"):
                return None
            owner = pipeline.owner_of(name, namespace, parent["metadata"]["uid"])
            outcome = self._reconcile(
                self._deps,
                owner,
                parent.get("spec") or {},
                int(parent["metadata"].get("generation", 0)),
                parent.get("status"),
            )
            kube.patch_status(ref, _dump(self._with_latest_foreign_conditions(ref, outcome.status)))
        return parent, outcome

    def _with_latest_foreign_conditions(
        self, ref: ObjectRef, status: PipelineStatus
    ) -> PipelineStatus:
        """Conditions other handlers own (autoscaling, model serving) as they are now."""
        try:
            current = self._deps.kube.get(ref)
        except KubeError:
            return status  # as the reconcile read them
        return with_current_foreign_conditions(status, (current or {}).get("status"))


def placed(spec: kopf.Spec, **_: Any) -> bool:
    """A Pipeline with placement belongs to the hub (``--mode hub``); members run the rest."""
    return bool(spec.get("placement"))


def local(spec: kopf.Spec, **_: Any) -> bool:
    return not placed(spec)


def register(
    registry: kopf.OperatorRegistry,
    deps: Deps,
    config: OperatorConfig,
    credentials: Configuration | None = None,
    executor: Executor | None = None,
) -> None:
    """Attach every handler to ``registry``; closures carry ``deps`` (no module globals).

    ``credentials``: the client configuration the reconcilers use; kopf logs in with the
    same one (None: kopf's own in-cluster / $KUBECONFIG discovery). ``executor``: the
    threads of kopf's sync handlers and of the reconciles watch events ask for (default:
    ``config.max_workers`` threads).
    """
    pool = executor or ThreadPoolExecutor(config.max_workers, thread_name_prefix="handler")

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Progress and diff-base live in annotations: the status schema stays strict. The
        # diff-base is a digest, so a large spec cannot push annotations over their limit.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = DigestDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.peering.lifetime = config.peering_lifetime_s
        settings.execution.executor = pool
        # Watching named namespaces needs no cluster-wide namespace/CRD scans: skipping them
        # avoids a minute of Forbidden retries under namespaced RBAC.
        settings.scanning.disabled = bool(config.namespaces)
        # Our events carry their own reasons (kopf.event); log lines are not re-posted.
        settings.posting.level = logging.ERROR

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if credentials is None:
            return kopf.login_via_client(**kwargs)
        return _connection_info(credentials)

    reconciles = CurrentReconciles(deps)

    @kopf.on.resume(*PIPELINES, when=local, registry=registry)
    @kopf.on.create(*PIPELINES, when=local, registry=registry)
    @kopf.on.update(*PIPELINES, field="spec", when=local, registry=registry)
    def pipeline_changed(meta: kopf.Meta, logger: kopf.Logger, reason: str, **_: Any) -> None:
        deps.metrics.triggered(pipeline.KIND, str(reason))
        try:
            done = reconciles.run(meta["namespace"], meta["name"])
        except KubeError as e:  # reading the Pipeline or writing its status failed
            delay = (
                deps.retry_transient_s if isinstance(e, KubeUnavailable) else deps.retry_rejected_s
            )
            raise kopf.TemporaryError(str(e), delay=delay) from e
        if done is not None:
            _finish(*done, logger)

    @kopf.timer(
        *PIPELINES,
        interval=config.resync_s,
        initial_delay=config.resync_s,
        when=local,
        registry=registry,
    )
    def pipeline_resync(
        spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, logger: kopf.Logger, **_: Any
    ) -> None:
        # Repairs drift and refreshes status; an unchanged Pipeline whose Pulsar snapshot
        # shows nothing new is skipped (the watches report changes in Kubernetes).
        owner = pipeline.owner_of(meta["name"], meta["namespace"], meta["uid"])
        generation = int(meta.get("generation", 0))
        if not pipeline.resync_needed(deps, owner, dict(spec), generation, dict(status)):
            deps.metrics.triggered(pipeline.KIND, "resync_skipped")
            return
        deps.metrics.triggered(pipeline.KIND, "resync")
        done = reconciles.run(meta["namespace"], meta["name"])
        if done is not None:
            _finish(*done, logger, timer=True)

    def autoscaled(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
        return local(spec) and autoscale.needs_ticks(dict(spec), dict(status))

    @kopf.timer(
        *PIPELINES,
        interval=config.autoscale_interval_s,
        when=autoscaled,
        registry=registry,
    )
    def pipeline_autoscale(
        body: kopf.Body,
        spec: kopf.Spec,
        meta: kopf.Meta,
        status: kopf.Status,
        patch: kopf.Patch,
        memo: kopf.Memo,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        # Per Pipeline: read its signals, scale its autoscaled stages; memory between ticks
        # (counters, smoothed rates, stabilization) lives in the Pipeline's own memo.
        if meta.get("deletionTimestamp"):
            return
        owner = pipeline.owner_of(meta["name"], meta["namespace"], meta["uid"])
        outcome = autoscale.autoscale_pipeline(
            deps, owner, dict(spec), dict(status), memo.get("autoscale", {})
        )
        memo["autoscale"] = outcome.memory
        own = autoscale.autoscaling_status(dict(status), outcome)
        if own is not None:
            patch.status["autoscaling"] = own
        unwritten = autoscale.write_condition(
            deps, owner, dict(status), str(meta["resourceVersion"]), outcome
        )
        if unwritten is not None:
            logger.info(f"ScalingActive not written this tick: {unwritten}")
        _post(body, outcome.events, logger)

    def follows_model_versions(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
        return local(spec) and serving.needs_ticks(dict(spec), dict(status))

    @kopf.timer(
        *PIPELINES,
        interval=config.model_serving_s,
        when=follows_model_versions,
        registry=registry,
    )
    def pipeline_model_serving(
        body: kopf.Body,
        spec: kopf.Spec,
        meta: kopf.Meta,
        status: kopf.Status,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        # The trainer announces versions at any time: the condition follows within a tick,
        # not at the next full Pulsar check.
        if meta.get("deletionTimestamp"):
            return
        owner = pipeline.owner_of(meta["name"], meta["namespace"], meta["uid"])
        outcome = serving.refresh_pipeline(
            deps, owner, dict(spec), dict(status), str(meta["resourceVersion"])
        )
        if outcome.unwritten is not None:
            logger.info("ModelServing not written this tick: %s", outcome.unwritten)
        _post(body, outcome.events, logger)

    @kopf.on.delete(*PIPELINES, when=local, registry=registry)
    def delete_pipeline(
        body: kopf.Body,
        spec: kopf.Spec,
        meta: kopf.Meta,
        status: kopf.Status,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        owner = pipeline.owner_of(meta["name"], meta["namespace"], meta["uid"])
        try:
            events = pipeline.delete_pipeline(
                deps, owner, dict(spec), dict(status), dict(meta.annotations)
            )
        except RetryLater as e:
            raise kopf.TemporaryError(str(e), delay=e.delay_s) from e
        _post(body, events, logger)

    def reconcile_failed(key: Hashable, error: Exception) -> None:
        namespace, name = cast(tuple[str, str], key)
        log.error(
            "reconcile of Pipeline %s/%s failed (the next event or resync retries)",
            namespace,
            name,
            exc_info=error,
        )

    coalesced = Coalescer(pool, reconcile_failed)
    workers_seen = LastSeen()

    def reconcile_named(namespace: str, name: str, trigger: str) -> None:
        """Reconcile a Pipeline outside its own handlers (something it depends on changed)
        and write its status, on the handlers' threads; returns at once."""
        deps.metrics.triggered(pipeline.KIND, trigger)
        coalesced.submit((namespace, name), lambda: _reconcile_named(namespace, name))

    def _reconcile_named(namespace: str, name: str) -> None:
        done = reconciles.run(namespace, name)
        if done is not None:
            _post(done[0], done[1].events, log)

    # The watch handlers below are async: they run in kopf's event loop, decide from the
    # event alone and only ask for a reconcile (coalesce.py: why the body must not wait).
    @kopf.on.event(*WORKER_DEPLOYMENTS, labels=WORKER_LABELS, registry=registry)
    async def worker_changed(event: Mapping[str, Any], meta: kopf.Meta, **_: Any) -> None:
        # A worker Deployment changed or vanished: re-reconcile its Pipeline now (drift
        # repair and fresh status) instead of waiting for the timer. The initial listing
        # (type None) and ADDED are the operator's own doing.
        if event.get("type") not in ("MODIFIED", "DELETED"):
            return
        key = (meta["namespace"], meta["name"])
        if event["type"] == "DELETED":
            workers_seen.forget(key)
        else:
            # Spec (generation) and readiness are all a reconcile would learn from it.
            body = dict(event.get("object") or {})
            state = (meta.get("generation"), deployment_ready(body))
            if not workers_seen.changed(key, state):
                return
        reconcile_named(meta["namespace"], meta["labels"][PIPELINE_LABEL], "deployment")

    async def worker_child_deleted(meta: kopf.Meta, **_: Any) -> None:
        # Deleted behind the operator's back: restored now (the resync of an unchanged
        # Pipeline reads no children; Deployments have worker_changed).
        reconcile_named(meta["namespace"], meta["labels"][PIPELINE_LABEL], "child_deleted")

    for resource in WORKER_CHILDREN:
        kopf.on.event(
            *resource,
            labels=WORKER_LABELS,
            when=lambda event, **_: event.get("type") == "DELETED",
            id=f"worker_child_deleted/{resource[2]}",
            registry=registry,
        )(worker_child_deleted)

    @kopf.on.event(*WORKER_PODS, labels=WORKER_LABELS, registry=registry)
    async def worker_pod_changed(
        event: Mapping[str, Any], body: kopf.Body, meta: kopf.Meta, **_: Any
    ) -> None:
        # A worker crashed or cannot start: report it now, in its own words. A recovery
        # changes the Deployment's readiness, which worker_changed reports.
        if event.get("type") != "MODIFIED":
            return
        if worker_failure(stage_of(dict(body)), [dict(body)]) is None:
            return
        reconcile_named(meta["namespace"], meta["labels"][PIPELINE_LABEL], "pod")

    @kopf.index(*PIPELINES, id=INDEX, registry=registry)
    def pipelines_by_backend(
        namespace: str | None, name: str, spec: kopf.Spec, **_: Any
    ) -> dict[tuple[str | None, str], str]:
        """(namespace, InferenceBackend) -> the Pipelines whose stages use it."""
        return {
            (namespace, str(stage["model"]["backend"])): name
            for stage in spec.get("stages") or []
            if isinstance(stage, dict)
            and isinstance(stage.get("model"), dict)
            and "backend" in stage["model"]
        }

    def backend_users_changed(
        namespace: str, backend_name: str, index: kopf.Index[Any, str]
    ) -> None:
        """An InferenceBackend appeared, changed or went: its Pipelines learn it now."""
        for name in sorted(set(index.get((namespace, backend_name), []))):
            reconcile_named(namespace, name, "backend")

    def backend_outcome(
        body: kopf.Body,
        spec: kopf.Spec,
        meta: kopf.Meta,
        status: kopf.Status,
        patch: kopf.Patch,
        logger: kopf.Logger,
    ) -> None:
        # The schema already refuses invalid backends, so a permanent failure here is rare.
        owner = backend.owner_of(meta["name"], meta["namespace"], meta["uid"])
        outcome = backend.reconcile_backend(
            deps, owner, dict(spec), int(meta.get("generation", 0)), dict(status)
        )
        patch.status.update(_dump(outcome.status))
        _finish(body, outcome, logger, timer=True)

    @kopf.on.resume(*BACKENDS, registry=registry)
    @kopf.on.create(*BACKENDS, registry=registry)
    @kopf.on.update(*BACKENDS, field="spec", registry=registry)
    def backend_changed(
        body: kopf.Body,
        spec: kopf.Spec,
        meta: kopf.Meta,
        status: kopf.Status,
        patch: kopf.Patch,
        logger: kopf.Logger,
        **kwargs: Any,
    ) -> None:
        backend_outcome(body, spec, meta, status, patch, logger)
        # kopf passes each index as a kwarg named after its function.
        backend_users_changed(meta["namespace"], meta["name"], kwargs[INDEX])

    @kopf.timer(
        *BACKENDS, interval=config.resync_s, initial_delay=config.resync_s, registry=registry
    )
    def backend_resync(
        body: kopf.Body,
        spec: kopf.Spec,
        meta: kopf.Meta,
        status: kopf.Status,
        patch: kopf.Patch,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        # Keeps the status of managed Triton fresh; Pipelines have their own resync.
        backend_outcome(body, spec, meta, status, patch, logger)

    @kopf.on.delete(*BACKENDS, registry=registry)
    def delete_backend(meta: kopf.Meta, logger: kopf.Logger, **kwargs: Any) -> None:
        owner = backend.owner_of(meta["name"], meta["namespace"], meta["uid"])
        try:
            backend.delete_backend(deps, owner)
        except RetryLater as e:
            raise kopf.TemporaryError(str(e), delay=e.delay_s) from e
        backend_users_changed(meta["namespace"], meta["name"], kwargs[INDEX])


def _connection_info(c: Configuration) -> kopf.ConnectionInfo:
    """kopf's view of a kubernetes-client configuration (as kopf.login_via_client does)."""
    header = c.get_api_key_with_prefix("BearerToken") or c.get_api_key_with_prefix("authorization")
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=c.host,
        ca_path=c.ssl_ca_cert,
        insecure=not c.verify_ssl,
        username=c.username or None,
        password=c.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=c.cert_file,
        private_key_path=c.key_file,
    )


def _dump(status: BaseModel) -> dict[str, Any]:
    """Every top-level field, None as null (a merge patch removes the field); nested
    None values are left out, as the API server would prune them anyway."""
    data = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    fields = type(status).model_fields.values()
    return {f.alias or "": data.get(f.alias or "") for f in fields}


def _post(body: Mapping[str, Any], events: Events, logger: logging.Logger | Any) -> None:
    for event in events.items:
        kopf.event(
            kopf.Body(cast(kopf.RawBody, dict(body))),
            type="Warning" if event.warning else "Normal",
            reason=event.reason,
            message=event.message[:1024],
        )
        log = logger.warning if event.warning else logger.info
        log("%s: %s", event.reason, event.message)


def _finish(
    body: Mapping[str, Any],
    outcome: Outcome[Any],
    logger: logging.Logger | Any,
    *,
    timer: bool = False,
) -> None:
    """Post the events, then hand failures to kopf: anything but an invalid spec is retried
    after a delay. An invalid spec waits for a spec change (a permanent error), except in a
    timer, which must keep running: a missing InferenceBackend may appear later."""
    _post(body, outcome.events, logger)
    if outcome.problem is None:
        return
    # kopf keeps the message in a progress annotation: a bounded one.
    message = outcome.problem.message[:MAX_ERROR_MESSAGE]
    if outcome.retry_after_s is not None:
        raise kopf.TemporaryError(message, delay=outcome.retry_after_s)
    if not timer:
        raise kopf.PermanentError(message)
