"""Requests for the same key while its work runs coalesce into one more run."""

from __future__ import annotations

import threading

import pytest

from streamvane_operator.coalesce import Coalescer, LastSeen


def test_requests_during_a_run_make_exactly_one_more_run_and_return_at_once() -> None:
    coalescer = Coalescer()
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def work() -> None:
        runs.append("run")
        if len(runs) == 1:
            started.set()
            release.wait(5)

    first = threading.Thread(target=coalescer.run, args=("p", work))
    first.start()
    assert started.wait(5)
    for _ in range(3):
        coalescer.run("p", work)  # returns at once: the first is running
    assert runs == ["run"]
    release.set()
    first.join(5)

    assert runs == ["run", "run"]
    coalescer.run("p", work)
    assert len(runs) == 3  # nothing running any more: runs at once


def test_other_keys_run_independently() -> None:
    coalescer = Coalescer()
    runs: list[str] = []

    coalescer.run("a", lambda: coalescer.run("b", lambda: runs.append("b")))

    assert runs == ["b"]


def test_a_failed_run_leaves_the_key_free() -> None:
    coalescer = Coalescer()

    def fail() -> None:
        raise RuntimeError("API server unavailable")

    with pytest.raises(RuntimeError):
        coalescer.run("p", fail)
    runs: list[int] = []
    coalescer.run("p", lambda: runs.append(1))
    assert runs == [1]


def test_last_seen_reports_a_change_only_when_the_state_differs() -> None:
    seen = LastSeen()

    assert seen.changed("deployment-uid", (1, False))
    assert not seen.changed("deployment-uid", (1, False))
    assert seen.changed("deployment-uid", (1, True))
    assert seen.changed("deployment-uid", (2, True))
    seen.forget("deployment-uid")
    assert seen.changed("deployment-uid", (2, True))
