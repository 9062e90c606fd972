"""KubeClient over a stand-in dynamic client: discovery lookups from many handler threads."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from streamvane_operator.kube.client import KubeClient, ObjectRef
from streamvane_operator.kube.errors import KubeUnavailable


class Discovery:
    """Records how many threads look up a resource at once (the real cache breaks at > 1)."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self._lock = threading.Lock()

    def get(self, **_: Any) -> object:
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.005)
        with self._lock:
            self.inside -= 1
        return object()


def test_list_from_many_threads_looks_up_one_resource_at_a_time() -> None:
    discovery = Discovery()
    kube = KubeClient(None, "test")  # type: ignore[arg-type]
    kube._dynamic = SimpleNamespace(  # type: ignore[assignment]
        resources=discovery,
        get=lambda *_, **__: SimpleNamespace(data=b'{"items": []}'),
    )

    with ThreadPoolExecutor(8) as pool:
        listed = list(pool.map(lambda _: kube.list("v1", "ConfigMap", "ns"), range(32)))

    assert listed == [[]] * 32
    assert discovery.most == 1


def test_an_answer_that_is_not_json_is_the_api_server_unavailable() -> None:
    kube = KubeClient(None, "test")  # type: ignore[arg-type]
    kube._dynamic = SimpleNamespace(  # type: ignore[assignment]
        resources=Discovery(), get=lambda *_, **__: SimpleNamespace(data=b"<html>proxy</html>")
    )

    with pytest.raises(KubeUnavailable, match="no JSON object"):
        kube.get(ObjectRef("v1", "ConfigMap", "ns", "name"))
