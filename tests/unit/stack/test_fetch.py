"""Fetching and building into the shared cache is exclusive across stacks."""

from __future__ import annotations

import threading
from pathlib import Path

from streamvane_stack.fetch import _exclusive


def test_exclusive_waits_for_the_holder_when_another_stack_builds(tmp_path: Path) -> None:
    lines: list[str] = []
    order: list[str] = []

    def second() -> None:
        with _exclusive(tmp_path, lines.append):
            order.append("second")

    with _exclusive(tmp_path, lines.append):
        waiter = threading.Thread(target=second)
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive(), "the second build did not wait"
        order.append("first")
    waiter.join(timeout=10)

    assert order == ["first", "second"]
    assert any("waiting" in line for line in lines)
