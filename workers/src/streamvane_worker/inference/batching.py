"""Rows of one micro-batch -> model calls of at most the model's max batch size, concurrent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import numpy.typing as npt


async def in_chunks(
    rows: int,
    step: int,
    call: Callable[[slice], Awaitable[npt.NDArray[np.float32]]],
    empty: tuple[int, ...],
) -> npt.NDArray[np.float32]:
    """``call`` for each slice of at most ``step`` of ``rows`` rows, all at once; the results
    concatenated in order (shape ``empty`` when there are no rows)."""
    slices = [slice(i, min(i + step, rows)) for i in range(0, rows, step)]
    parts = await asyncio.gather(*(call(s) for s in slices))
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(empty, np.float32)
