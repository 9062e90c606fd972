"""Pod status -> stage phase and Degraded, as kubelet reports workers (pure)."""

from __future__ import annotations

from typing import Any

from streamvane_operator.api.pipeline import StagePhase
from streamvane_operator.reconcile.status import (
    Failure,
    stage_status,
    worker_failure,
)


def pod(name: str, container: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, **meta},
        "status": {"phase": "Running", "containerStatuses": [{"name": "worker", **container}]},
    }


CRASHED = {
    "ready": False,
    "restartCount": 3,
    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 8s"}},
    "lastState": {
        "terminated": {
            "exitCode": 3,
            "reason": "Error",
            "message": "model backend triton (t:8001): model 'nope' is not served",
        }
    },
}


def deployment(replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 1,
            "replicas": ready,
            "updatedReplicas": ready,
            "readyReplicas": ready,
        },
    }


def test_worker_failure_quotes_the_termination_message_when_container_crash_loops() -> None:
    failure = worker_failure("embed", [pod("p-1", CRASHED)])

    assert failure is not None
    assert failure.failure is Failure.WORKER_CRASH_LOOP
    assert failure.describe() == (
        "stage embed: worker p-1 exited with code 3 (3 restarts): "
        "model backend triton (t:8001): model 'nope' is not served"
    )


def test_worker_failure_reports_crash_loop_when_restarted_worker_is_not_ready_again() -> None:
    running_again = {**CRASHED, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}

    failure = worker_failure("embed", [pod("p-1", running_again)])

    assert failure is not None and failure.failure is Failure.WORKER_CRASH_LOOP


def test_worker_failure_is_none_when_restarted_worker_became_ready() -> None:
    recovered = {
        **CRASHED,
        "ready": True,
        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
    }

    assert worker_failure("embed", [pod("p-1", recovered)]) is None


def test_worker_failure_is_none_when_worker_starts_for_the_first_time() -> None:
    starting = {"ready": False, "restartCount": 0, "state": {"running": {"startedAt": "x"}}}
    creating = {"ready": False, "restartCount": 0, "state": {"waiting": {"reason": "Pending"}}}

    assert worker_failure("embed", [pod("a", starting), pod("b", creating)]) is None


def test_worker_failure_reports_start_failure_when_kubelet_cannot_create_container() -> None:
    missing = {
        "ready": False,
        "restartCount": 0,
        "state": {
            "waiting": {
                "reason": "CreateContainerConfigError",
                "message": 'secret "triton-ca" not found',
            }
        },
    }

    failure = worker_failure("embed", [pod("p-1", missing)])

    assert failure is not None and failure.failure is Failure.WORKER_START_FAILED
    assert 'secret "triton-ca" not found' in failure.message


def test_worker_failure_ignores_pods_being_deleted() -> None:
    leaving = pod("p-1", CRASHED, deletionTimestamp="2026-01-01T00:00:00Z")

    assert worker_failure("embed", [leaving]) is None


def test_stage_status_says_scaled_to_zero_when_zero_replicas_are_desired() -> None:
    status = stage_status("embed", deployment(0, 0), "sub", 4)

    assert status.phase is StagePhase.SCALED_TO_ZERO
    assert "0 replicas desired" in status.message


def test_stage_status_is_failing_with_workers_message_when_workers_crash() -> None:
    failure = worker_failure("embed", [pod("p-1", CRASHED)])

    status = stage_status("embed", deployment(1, 0), "sub", 0, failure=failure)

    assert status.phase is StagePhase.FAILING
    assert "model 'nope' is not served" in status.message


def test_stage_status_is_ready_or_rolling_out_from_the_deployment() -> None:
    assert stage_status("embed", deployment(2, 2), "sub", 0).phase is StagePhase.READY
    assert stage_status("embed", deployment(2, 1), "sub", 0).phase is StagePhase.ROLLING_OUT
    assert stage_status("embed", None, "sub", 0, 1).phase is StagePhase.PENDING
