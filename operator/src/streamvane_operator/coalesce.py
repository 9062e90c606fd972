"""Coalesce requests to redo the same work: a burst of watch events for one Pipeline (three
Deployments turning ready, a pod and its Deployment) costs two reconciles, not one each."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable


class Coalescer:
    """``run(key, work)`` runs ``work`` unless work for ``key`` is already running; then the
    running one runs once more when it is done (it reads the state anew), and this call
    returns at once. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[Hashable] = set()
        self._again: set[Hashable] = set()

    def run(self, key: Hashable, work: Callable[[], None]) -> None:
        with self._lock:
            if key in self._running:
                self._again.add(key)
                return
            self._running.add(key)
        try:
            while True:
                work()
                with self._lock:
                    if key not in self._again:
                        self._running.discard(key)
                        return
                    self._again.discard(key)
        except BaseException:
            with self._lock:
                self._running.discard(key)
                self._again.discard(key)
            raise


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
