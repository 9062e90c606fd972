"""Session fixtures shared by unit, integration and e2e tests.

``stack`` gives integration and e2e tests the real local stack. It reuses a running stack
(``make stack-up``) and otherwise starts one and stops it at the end of the session. Set
``STREAMVANE_REQUIRE_STACK=1`` (CI does) to turn a stack that cannot start into a failure
instead of a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from streamvane_stack import Endpoints, Stack


@pytest.fixture(scope="session")
def local_stack() -> Iterator[Stack]:
    stack = Stack()
    started_here = not stack.is_ready()
    if started_here:
        try:
            stack.up()
        except Exception as e:
            if os.environ.get("STREAMVANE_REQUIRE_STACK") == "1":
                raise
            pytest.skip(f"local stack unavailable: {e}")
    yield stack
    if started_here:
        stack.down()


@pytest.fixture(scope="session")
def stack(local_stack: Stack) -> Endpoints:
    """Addresses of the running Pulsar, kube-apiserver and Triton."""
    return local_stack.endpoints
