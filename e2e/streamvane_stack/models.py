"""Models of one's own in the stack's Triton: a copy of a built model under another name.

The online trainer writes versions into the repository and reloads its model with its own
version policy; a test (or a run) that trains gets a copy of the ranker, so every other user
of the stack keeps scoring with the built one.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from streamvane_stack.stack import Endpoints

LOAD_TIMEOUT_S = 120.0


def copy_model(stack: Endpoints, base: str, name: str) -> Path:
    """Version 1 of ``base`` as model ``name`` in the stack's repository, loaded by Triton
    (explicit model control); returns its folder."""
    source, folder = stack.model_repository / base, stack.model_repository / name
    (folder / "1").mkdir(parents=True)
    for file in (source / "1").iterdir():
        if file.is_file():
            shutil.copyfile(file, folder / "1" / file.name)
    config = (source / "config.pbtxt").read_text()
    (folder / "config.pbtxt").write_text(config.replace(f'name: "{base}"', f'name: "{name}"'))
    url = f"http://{stack.triton_http}/v2/repository/models/{name}/load"
    response = httpx.post(url, json={}, timeout=LOAD_TIMEOUT_S)
    if response.status_code != 200:
        raise RuntimeError(f"Triton did not load {name}: {response.text}")
    return folder


def drop_model(stack: Endpoints, name: str) -> None:
    """Unload ``name`` and remove its folder, whatever versions a trainer wrote there."""
    url = f"http://{stack.triton_http}/v2/repository/models/{name}/unload"
    httpx.post(url, json={}, timeout=LOAD_TIMEOUT_S)
    shutil.rmtree(stack.model_repository / name, ignore_errors=True)


@contextmanager
def model_copy(stack: Endpoints, base: str, name: str, keep: bool = False) -> Iterator[Path]:
    """``copy_model``, dropped at the end unless ``keep``."""
    try:
        yield copy_model(stack, base, name)
    finally:
        if not keep:
            drop_model(stack, name)
