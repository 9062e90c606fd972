"""The benchmark's CPU accounting reads the same figure the kernel gives the process."""

from __future__ import annotations

import time

from bench.bench_workers import cpu_seconds


def test_cpu_seconds_of_this_process_follow_its_process_time_when_busy() -> None:
    before, clock_before = cpu_seconds(), time.process_time()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    spent, clock_spent = cpu_seconds() - before, time.process_time() - clock_before

    assert spent >= 0.2
    assert abs(spent - clock_spent) < 0.05  # one clock tick is 10 ms
