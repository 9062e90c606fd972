"""``make demo-regions``: one Pipeline in three regions, rolled out in two waves.

Starts the multi-region stack (a hub kube-apiserver, one kube-apiserver per region, two Pulsar
clusters, one Triton), the hub operator and per region a member operator and process runner;
rolls out a Pipeline, then a good change (wave 1, bake, wave 2), then a bad one (a model no
Triton serves) that is caught in wave 1 and rolled back while wave 2 keeps the good revision.
Traffic flows the whole time; the timeline and the figures are printed at the end.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from process_runner.regions import (
    REGIONS_NEEDED,
    MultiRegion,
    Timeline,
    Traffic,
    multi_region,
    phase_is,
)
from streamvane_stack import Stack

console = Console() if sys.stdout.isatty() else Console(width=130)
app = typer.Typer(add_completion=False, help=__doc__)
MISSING_MODEL = {"backend": "triton-local", "name": "no-such-model"}


def _stage(
    world: MultiRegion, timeline: Timeline, label: str, done: str, timeout_s: float
) -> float:
    started = time.monotonic()
    with console.status(label):
        timeline.until(label, phase_is(*done.split("|")), timeout_s)
    return time.monotonic() - started


@app.command()
def main(
    bake_seconds: Annotated[int, typer.Option(help="Bake time of each wave.")] = 10,
    deadline_seconds: Annotated[int, typer.Option(help="Progress deadline of a wave.")] = 150,
) -> None:
    os.environ.setdefault("STREAMVANE_REGIONS", str(REGIONS_NEEDED))
    stack = Stack()
    if stack.settings.regions < REGIONS_NEEDED:
        console.print(f"[red]needs STREAMVANE_REGIONS >= {REGIONS_NEEDED}[/red]")
        raise typer.Exit(1)
    started = time.monotonic()
    endpoints = stack.up(lambda line: console.print(f"[cyan]stack[/cyan] {line}"))
    console.print(f"multi-region stack up in {time.monotonic() - started:.0f}s")
    logs = Path(tempfile.mkdtemp(prefix="streamvane-demo-regions-"))
    with multi_region(endpoints, logs) as world:
        r1, r2, r3 = world.region_names()
        doc = world.pipeline_doc(
            "demo",
            [[r1], [r2, r3]],
            bakeSeconds=bake_seconds,
            progressDeadlineSeconds=deadline_seconds,
        )
        timeline = Timeline(world, "demo")
        _stage(world, timeline, doc, "first revision rolling out", "Complete|Halted|Failed", 600)
        with Traffic(world, "demo") as traffic:
            doc["spec"]["stages"][0]["batching"] = {"maxBatchSize": 16}
            mark_good = time.monotonic() - timeline.start
            good_s = _stage(
                world, timeline, doc, "good change rolling out", "Complete|Halted|Failed", 600
            )
            good = world.rollout("demo")
            doc["spec"]["stages"][0].update(type="text-embedding", model=MISSING_MODEL)
            mark_bad = time.monotonic() - timeline.start
            _stage(
                world, timeline, doc, "bad change caught", "RolledBack|Failed",
                deadline_seconds + 180,
            )  # fmt: skip
            bad = world.rollout("demo")
            wave2 = {r: world.member_revision(r, "demo") for r in (r2, r3)}
        with console.status("counting messages"):
            lost = traffic.lost()
    table = Table(title=f"Rollout timeline of Pipeline demo ({r1} | {r2}, {r3})")
    for column in ("t (s)", "who", "state"):
        table.add_column(column)
    for t, who, what in timeline.events:
        style = (
            "red"
            if any(w in what for w in ("Failed", "RolledBack", "Halted", "Unreachable"))
            else ""
        )
        table.add_row(f"{t:6.1f}", who, f"[{style}]{what}[/{style}]" if style else what)
    console.print(table)
    bad_first = next(
        (t for t, w, what in timeline.events if w == r1 and "Progressing" in what and t > mark_bad),
        mark_bad,
    )
    rolled = timeline.first("rollout", f"RolledBack {bad.get('revision')}") or float("nan")
    figures = Table(title="Figures")
    figures.add_column("what")
    figures.add_column("value")
    figures.add_row(
        "good revision to all regions", f"{good_s:.1f}s (of which bake {2 * bake_seconds}s)"
    )
    figures.add_row("good revision result", f"{good.get('phase')} {good.get('revision')}")
    figures.add_row(
        "bad revision: first write -> rolled back",
        f"{rolled - bad_first:.1f}s ({bad.get('reason')})",
    )
    figures.add_row(
        "wave 2 during the bad revision", ", ".join(f"{r}: {v}" for r, v in wave2.items())
    )
    figures.add_row(
        "messages sent / lost",
        f"{sum(len(s) for s in traffic.sent.values())} / {sum(lost.values())}",
    )
    figures.add_row(
        "timeline marks", f"good change at {mark_good:.1f}s, bad change at {mark_bad:.1f}s"
    )
    console.print(figures)
    console.print(f"logs: {logs}")
    if sum(lost.values()) or bad.get("phase") != "RolledBack" or good.get("phase") != "Complete":
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
