"""``python -m streamvane_stack up|down|status|restart``: the local stack from the command line."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from streamvane_stack.fetch import MissingTool
from streamvane_stack.stack import Stack, StackError

app = typer.Typer(
    help="Real Pulsar, kube-apiserver (+etcd) and Triton on 127.0.0.1, for tests and the demo.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _report(line: str) -> None:
    console.print(f"[cyan]stack[/cyan] {line}")


@app.command()
def up(fresh: bool = typer.Option(False, help="Wipe Pulsar and etcd data first.")) -> None:
    """Fetch/build what is missing (cached), start every server, wait until each is ready."""
    stack = Stack()
    if fresh:
        stack.down(_report)
        stack.wipe()
    try:
        with console.status("starting the local stack"):
            endpoints = stack.up(_report)
    except (StackError, MissingTool) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    console.print(f"ready. export KUBECONFIG={endpoints.kubeconfig}")


@app.command()
def down() -> None:
    """Stop every server; no process is left behind. Data stays for the next `up`."""
    Stack().down(_report)


@app.command()
def status() -> None:
    """Each component's state, address, pid and log; exit 1 unless all are ready."""
    stack = Stack()
    table = Table(title="Streamvane local stack")
    for column in ("component", "state", "address", "pid", "log"):
        table.add_column(column)
    statuses = stack.statuses()
    for s in statuses:
        state = (
            "[green]ready[/green]"
            if s.ready
            else "[yellow]starting[/yellow]"
            if s.running
            else "[red]stopped[/red]"
        )
        table.add_row(s.name, state, s.address, str(s.pid or "-"), str(s.log))
    out = Console(width=160)  # wide enough for addresses and log paths, even when piped
    out.print(table)
    out.print(f"kubeconfig: {stack.settings.kubeconfig}")
    for region in stack.endpoints.regions:
        out.print(
            f"{region.name}: kubeconfig {region.kubeconfig}, Pulsar {region.pulsar_cluster} "
            f"at {region.pulsar_url}"
        )
    if not all(s.ready for s in statuses):
        raise typer.Exit(1)


@app.command()
def restart(
    component: str = typer.Argument(..., help="pulsar, etcd, kube-apiserver or triton"),
) -> None:
    """Restart one component."""
    stack = Stack()
    by_name = {c.name: c for c in stack.components}
    if component not in by_name:
        raise typer.BadParameter(f"unknown component {component!r}; one of {', '.join(by_name)}")
    stack.restart(by_name[component], _report)


if __name__ == "__main__":
    app()
