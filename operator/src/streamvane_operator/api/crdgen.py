"""``python -m streamvane_operator.api.crdgen``: write (or check) the CRD YAML in ``crds/``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from streamvane_operator.api.crd import KINDS, Kind, crd

HEADER = "# Generated from streamvane_operator.api by `make crds`; do not edit.\n"


def render(kind: Kind) -> str:
    return HEADER + yaml.safe_dump(crd(kind), sort_keys=False, width=100)


def file_name(kind: Kind) -> str:
    return f"{kind.crd_name}.yaml"


def stale_files(out: Path) -> list[Path]:
    """CRD files under ``out`` that differ from what the models generate."""
    return [
        out / file_name(kind)
        for kind in KINDS
        if not (out / file_name(kind)).is_file()
        or (out / file_name(kind)).read_text() != render(kind)
    ]


def main(
    out: Annotated[Path, typer.Option(help="Directory the CRD files are written to.")] = Path(
        "crds"
    ),
    check: Annotated[
        bool, typer.Option(help="Only check; exit 1 if a file is missing or stale.")
    ] = False,
) -> None:
    """Generate the CustomResourceDefinitions from the pydantic models."""
    if check:
        stale = stale_files(out)
        for path in stale:
            typer.echo(f"stale: {path} (run `make crds`)", err=True)
        raise typer.Exit(1 if stale else 0)
    out.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        (out / file_name(kind)).write_text(render(kind))
        typer.echo(f"wrote {out / file_name(kind)}")


if __name__ == "__main__":
    typer.run(main)
