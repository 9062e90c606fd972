"""Reconciles asked for by watch events, coalesced per key and run on the handlers' pool;
and the locks that keep two reconciles of one Pipeline from overlapping.

A watch handler only asks (``Coalescer.submit``) and returns: kopf drops the event's body at
once, where a handler waiting for a thread would hold it (at 500 Pipelines, the bodies of
thousands of children queued behind the create handlers). A burst of events for one Pipeline
(three Deployments turning ready, a pod and its Deployment) costs at most two reconciles.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Executor


class Coalescer:
    """``submit(key, work)`` queues ``work`` on ``executor`` and returns at once. While work
    for ``key`` waits in the queue, another request adds nothing (the queued run reads the
    state anew); while it runs, the request makes one more run after it. A failed run goes
    to ``failed``, and the key is free again. ``work`` runs in the context (``contextvars``)
    of the ``submit`` that queued it. Thread-safe."""

    def __init__(self, executor: Executor, failed: Callable[[Hashable, Exception], None]) -> None:
        self._executor = executor
        self._failed = failed
        self._lock = threading.Lock()
        self._queued: set[Hashable] = set()
        self._running: set[Hashable] = set()
        self._again: set[Hashable] = set()

    def submit(self, key: Hashable, work: Callable[[], None]) -> None:
        with self._lock:
            if key in self._queued:
                return
            if key in self._running:
                self._again.add(key)
                return
            self._queued.add(key)
        # In the caller's context: kopf.event finds kopf's settings there.
        self._executor.submit(contextvars.copy_context().run, self._run, key, work)

    def _run(self, key: Hashable, work: Callable[[], None]) -> None:
        with self._lock:
            self._queued.discard(key)
            self._running.add(key)
        while True:
            try:
                work()
            except Exception as e:  # reported; the next event or resync tries again
                self._failed(key, e)
            with self._lock:
                if key not in self._again:
                    self._running.discard(key)
                    return
                self._again.discard(key)


class KeyedLocks:
    """A lock per key: ``with locks.hold(key):``. Striped, so that nothing grows with the
    keys or has to be forgotten; two keys that share a stripe only wait for each other."""

    def __init__(self, stripes: int = 256) -> None:
        self._stripes = [threading.Lock() for _ in range(stripes)]

    def hold(self, key: Hashable) -> threading.Lock:
        return self._stripes[hash(key) % len(self._stripes)]


class LastSeen:
    """The last state seen per key: a watch event that changes nothing that matters (a
    status write that leaves readiness as it was) needs no reconcile. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[Hashable, Hashable] = {}

    def changed(self, key: Hashable, state: Hashable) -> bool:
        """Whether ``state`` differs from the last one seen for ``key`` (or none was)."""
        with self._lock:
            before = self._states.get(key)
            self._states[key] = state
        return before != state

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._states.pop(key, None)
