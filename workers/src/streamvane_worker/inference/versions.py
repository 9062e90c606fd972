"""Which version of the ranking model to ask Triton for (pure).

The online trainer announces every version it exports (``ModelVersion``), each announcement
naming the version Triton serves after it. The ranking stage asks for the newest announced
serving version. Triton may not serve it yet (another Triton replica still loading it) or any
more (unloaded behind the trainer's back): a version Triton refuses is skipped for
``RETRY_UNSERVED_S`` and the previous version that served is asked for instead, then Triton's
own default. Good input is never dead-lettered over a version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

RETRY_UNSERVED_S = 5.0
"""How long a version Triton refused is left alone before it is asked for again."""


@dataclass(frozen=True)
class VersionChoice:
    announced: int | None = None
    """Serving version of the newest announcement; None: none read (Triton's default)."""
    served: int | None = None
    """The last version asked for by number that scored a request."""
    refused: Mapping[int, float] = field(default_factory=lambda: MappingProxyType({}))
    """Versions Triton refused, with when (monotonic seconds)."""


def announce(choice: VersionChoice, version: int) -> VersionChoice:
    """The newest announcement says ``version`` serves: ask for it next, even if refused
    before (a rollback re-announces an older version)."""
    return replace(choice, announced=version, refused=_without(choice.refused, version))


def pick(choice: VersionChoice, now: float, retry_s: float = RETRY_UNSERVED_S) -> int | None:
    """The version to ask for: the announced one, else the last that served, skipping those
    refused within ``retry_s``; None: Triton's default version."""
    for version in (choice.announced, choice.served):
        refused_at = choice.refused.get(version) if version is not None else None
        if version is not None and (refused_at is None or now - refused_at >= retry_s):
            return version
    return None


def refused(choice: VersionChoice, version: int, now: float) -> VersionChoice:
    """Triton does not serve ``version`` now."""
    return replace(choice, refused=MappingProxyType({**choice.refused, version: now}))


def served(choice: VersionChoice, version: int) -> VersionChoice:
    """``version`` scored a request: the one to fall back to from now on."""
    if choice.served == version and version not in choice.refused:
        return choice
    return replace(choice, served=version, refused=_without(choice.refused, version))


def _without(refused_at: Mapping[int, float], version: int) -> Mapping[int, float]:
    return MappingProxyType({v: t for v, t in refused_at.items() if v != version})
