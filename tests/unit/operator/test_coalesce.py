"""Reconciles asked for while one for the same key is queued or running coalesce."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streamvane_operator.coalesce import Coalescer, KeyedLocks, LastSeen


class Held:
    """An executor that keeps what is submitted until ``release``: what is queued, and when."""

    def __init__(self) -> None:
        self.queued: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self.queued.append((fn, args))

    def release(self) -> None:
        while self.queued:
            fn, args = self.queued.pop(0)
            fn(*args)


def failures() -> tuple[list[tuple[Hashable, Exception]], Callable[[Hashable, Exception], None]]:
    seen: list[tuple[Hashable, Exception]] = []
    return seen, lambda key, error: seen.append((key, error))


def test_requests_while_queued_add_nothing_and_submit_returns_at_once() -> None:
    executor, runs = Held(), []
    coalescer = Coalescer(executor, failures()[1])  # type: ignore[arg-type]

    for _ in range(3):
        coalescer.submit("p", lambda: runs.append("p"))
    coalescer.submit("q", lambda: runs.append("q"))

    assert runs == [] and len(executor.queued) == 2
    executor.release()
    assert runs == ["p", "q"]


def test_requests_during_a_run_make_exactly_one_more_run() -> None:
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def work() -> None:
        runs.append("run")
        if len(runs) == 1:
            started.set()
            release.wait(5)

    with ThreadPoolExecutor(2) as pool:
        coalescer = Coalescer(pool, failures()[1])
        coalescer.submit("p", work)
        assert started.wait(5)
        for _ in range(3):
            coalescer.submit("p", work)  # the first is running: one more run after it
        assert runs == ["run"]
        release.set()
    assert runs == ["run", "run"]


def test_a_failed_run_is_reported_and_leaves_the_key_free() -> None:
    executor = Held()
    seen, failed = failures()
    coalescer = Coalescer(executor, failed)  # type: ignore[arg-type]
    error = RuntimeError("API server unavailable")

    def fail() -> None:
        raise error

    coalescer.submit("p", fail)
    executor.release()
    assert seen == [("p", error)]
    runs: list[int] = []
    coalescer.submit("p", lambda: runs.append(1))
    executor.release()
    assert runs == [1]


def test_last_seen_reports_a_change_only_when_the_state_differs() -> None:
    seen = LastSeen()

    assert seen.changed("deployment-uid", (1, False))
    assert not seen.changed("deployment-uid", (1, False))
    assert seen.changed("deployment-uid", (1, True))
    assert seen.changed("deployment-uid", (2, True))
    seen.forget("deployment-uid")
    assert seen.changed("deployment-uid", (2, True))


REQUESTER: contextvars.ContextVar[str] = contextvars.ContextVar("requester")


def test_work_runs_in_the_context_of_the_submit_that_queued_it() -> None:
    # kopf.event reads kopf's settings from a context variable of the handler that asks.
    seen: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        coalescer = Coalescer(pool, failures()[1])
        REQUESTER.set("watch handler")
        coalescer.submit("p", lambda: seen.append(REQUESTER.get("none")))
    assert seen == ["watch handler"]


def test_keyed_locks_hold_one_lock_per_key() -> None:
    locks = KeyedLocks(stripes=8)
    assert locks.hold(("ns", "p")) is locks.hold(("ns", "p"))
    held = locks.hold(("ns", "p"))
    with held:
        assert not locks.hold(("ns", "p")).acquire(blocking=False)
