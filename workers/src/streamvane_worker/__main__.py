"""``python -m streamvane_worker``: run one stage replica configured by a WorkerConfig."""

from __future__ import annotations

import asyncio
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
from pydantic import BaseModel, ValidationError

from streamvane_worker import logs
from streamvane_worker.config import (
    CONFIG_FILE_ENV,
    CONFIG_JSON_ENV,
    HEALTH_PORT_ENV,
    WorkerConfig,
)

EXIT_CONFIG = 2
EXIT_STARTUP = 3

TERMINATION_MESSAGE_PATH_ENV = "STREAMVANE_TERMINATION_MESSAGE_PATH"
"""Where a fatal startup error is written for Kubernetes (the container's
terminationMessagePath); unset means /dev/termination-log when kubelet created it."""
DEFAULT_TERMINATION_MESSAGE_PATH = Path("/dev/termination-log")
TERMINATION_MESSAGE_LIMIT = 4096
"""Kubelet reads at most this many bytes of the termination message."""


def _field_lines(model: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per config field, nested sections flattened to dotted camelCase paths."""
    lines = []
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        annotation: Any = field.annotation
        nested = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        section = next((a for a in nested if issubclass(a, BaseModel)), None)
        if section is not None:
            lines.extend(_field_lines(section, path + "."))
            continue
        if field.is_required():
            default = "required"
        else:
            value = field.get_default(call_default_factory=True)
            default = f"default {getattr(value, 'value', value)!r}"
        choices = [a for a in nested if issubclass(a, StrEnum)]
        if choices:
            default += ", one of " + "|".join(m.value for m in choices[0])
        lines.append(f"  {path} ({default}): {field.description or ''}".rstrip(": "))
    return lines


HELP = f"""Run one Streamvane stage replica: consume from Pulsar, micro-batch, run the stage (Triton
or in-process onnxruntime), publish results, ack. SIGTERM drains and exits 0.

The configuration is a WorkerConfig JSON document, read from ${CONFIG_JSON_ENV} (inline JSON),
else from the file named by ${CONFIG_FILE_ENV}, else from --config; ${HEALTH_PORT_ENV} overrides
healthPort. Fields:

\b
{chr(10).join(_field_lines(WorkerConfig))}

Exit codes: 0 drained after SIGTERM; {EXIT_CONFIG} invalid configuration; {EXIT_STARTUP} Pulsar or the
model backend unreachable / wrong model (the message names which). Either failure is also written
as the Kubernetes termination message: to ${TERMINATION_MESSAGE_PATH_ENV}, else to
{DEFAULT_TERMINATION_MESSAGE_PATH} when it exists."""

app = typer.Typer(
    add_completion=False, rich_markup_mode=None, context_settings={"max_content_width": 120}
)


def load_config(config_file: Path | None) -> WorkerConfig:
    """Inline JSON env > file env > --config, then ${HEALTH_PORT_ENV} if set; raises
    ValueError naming the source."""
    config = _load(config_file)
    port = os.environ.get(HEALTH_PORT_ENV)
    if not port:
        return config
    try:
        return WorkerConfig.model_validate({**config.model_dump(), "health_port": port})
    except ValidationError as e:
        raise ValueError(f"invalid ${HEALTH_PORT_ENV}={port!r}: {e}") from e


def _load(config_file: Path | None) -> WorkerConfig:
    inline = os.environ.get(CONFIG_JSON_ENV)
    if inline:
        return _parse(inline, f"${CONFIG_JSON_ENV}")
    path = Path(os.environ[CONFIG_FILE_ENV]) if os.environ.get(CONFIG_FILE_ENV) else config_file
    if path is None:
        raise ValueError(
            f"no configuration: set ${CONFIG_JSON_ENV} or ${CONFIG_FILE_ENV}, or pass --config"
        )
    try:
        return _parse(path.read_text(), str(path))
    except OSError as e:
        raise ValueError(f"cannot read config file {path}: {e}") from e


def write_termination_message(message: str) -> None:
    """Leave ``message`` where Kubernetes shows it in the pod's status (the container's
    lastState.terminated.message); best effort, the exit code still tells the failure."""
    configured = os.environ.get(TERMINATION_MESSAGE_PATH_ENV)
    path = Path(configured) if configured else DEFAULT_TERMINATION_MESSAGE_PATH
    if not configured and not path.exists():
        return  # not in a pod: kubelet creates the file before the container starts
    try:
        path.write_bytes(message.encode()[:TERMINATION_MESSAGE_LIMIT])
    except OSError as e:
        print(f"streamvane-worker: no termination message in {path}: {e}", file=sys.stderr)


def _parse(text: str, source: str) -> WorkerConfig:
    try:
        return WorkerConfig.model_validate_json(text)
    except ValidationError as e:
        raise ValueError(f"invalid WorkerConfig in {source}:\n{e}") from e


@app.command(help=HELP)
def run(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="WorkerConfig JSON file (if no env var is set)."),
    ] = None,
) -> None:
    from streamvane_worker.runtime.app import StartupError, serve

    try:
        worker_config = load_config(config)
    except ValueError as e:
        print(f"streamvane-worker: {e}", file=sys.stderr)
        write_termination_message(str(e))
        raise typer.Exit(EXIT_CONFIG) from e
    logs.configure(
        worker_config.log_format, pipeline=worker_config.pipeline, stage=worker_config.stage
    )
    try:
        asyncio.run(serve(worker_config))
    except StartupError as e:
        structlog.get_logger(__name__).error("startup_failed", error=str(e))
        write_termination_message(str(e))
        raise typer.Exit(EXIT_STARTUP) from e


def main() -> None:
    app()


if __name__ == "__main__":
    main()
