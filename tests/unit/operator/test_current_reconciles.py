"""Reconciles of one Pipeline never overlap: the status written last is the newest one's."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from streamvane_operator.api.common import API_VERSION
from streamvane_operator.api.pipeline import PipelineStatus
from streamvane_operator.handlers import CurrentReconciles
from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.kube.testing import FakeKube
from streamvane_operator.reconcile.common import Deps, Events, Outcome
from streamvane_operator.render.labels import Owner
from streamvane_operator.render.worker import WorkerDefaults

REF = ObjectRef(API_VERSION, "Pipeline", "media", "cu")
PIPELINE: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": "Pipeline",
    "metadata": {"name": "cu", "namespace": "media", "uid": "u1", "generation": 1},
    "spec": {"stages": []},
}


class Reconciler:
    """The first reconcile finds the workers not ready and is held until ``release``; every
    later one finds them ready. Records what overlapped."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.running = 0
        self.overlapped = False
        self._lock = threading.Lock()

    def __call__(
        self,
        deps: Deps,
        owner: Owner,
        spec: Mapping[str, Any],
        generation: int,
        status: Mapping[str, Any] | None,
    ) -> Outcome[PipelineStatus]:
        with self._lock:
            self.calls += 1
            first = self.calls == 1
            self.running += 1
            self.overlapped |= self.running > 1
        if first:
            self.entered.set()
            assert self.release.wait(10)
        with self._lock:
            self.running -= 1
        ready = "0/3" if first else "3/3"
        return Outcome(PipelineStatus(stages_ready=ready), Events(), None, None)


def test_a_reconcile_asked_for_meanwhile_waits_and_its_status_is_the_one_kept() -> None:
    kube = FakeKube([PIPELINE])
    reconcile = Reconciler()
    reconciles = CurrentReconciles(
        Deps(kube=kube, pulsar=None, defaults=WorkerDefaults(image="w")),  # type: ignore[arg-type]
        reconcile,
    )
    older = threading.Thread(target=reconciles.run, args=("media", "cu"))
    older.start()
    assert reconcile.entered.wait(10)
    newer = threading.Thread(target=reconciles.run, args=("media", "cu"))
    newer.start()
    newer.join(0.2)
    assert newer.is_alive()  # waits for the older one, which has not written yet

    reconcile.release.set()
    older.join(10)
    newer.join(10)

    assert not reconcile.overlapped and reconcile.calls == 2
    stored = kube.get(REF)
    assert stored is not None and stored["status"]["stagesReady"] == "3/3"


def test_a_pipeline_being_deleted_is_not_reconciled() -> None:
    deleting = {**PIPELINE, "metadata": {**PIPELINE["metadata"], "deletionTimestamp": "now"}}
    reconcile = Reconciler()
    reconcile.release.set()
    reconciles = CurrentReconciles(
        Deps(kube=FakeKube([deleting]), pulsar=None, defaults=WorkerDefaults(image="w")),  # type: ignore[arg-type]
        reconcile,
    )

    assert reconciles.run("media", "cu") is None
    assert reconciles.run("media", "gone") is None
    assert reconcile.calls == 0
