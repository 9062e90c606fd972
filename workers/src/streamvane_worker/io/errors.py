"""Errors of the Pulsar adapters, translated from ``pulsar`` exceptions at the boundary."""

from __future__ import annotations

import pulsar
from pulsar.asyncio import PulsarException


class PulsarError(Exception):
    """Base of every Pulsar adapter error."""


class PulsarUnavailable(PulsarError):
    """The broker cannot be reached (at start, or a send/ack timed out); retry later."""


class PublishRejected(PulsarError):
    """The broker refused this message (too big, not authorized, topic gone); do not retry."""


_PERMANENT = frozenset(
    {
        pulsar.Result.MessageTooBig,
        pulsar.Result.AuthorizationError,
        pulsar.Result.AuthenticationError,
        pulsar.Result.TopicNotFound,
        pulsar.Result.InvalidTopicName,
    }
)


def from_pulsar(exc: Exception, *, what: str) -> PulsarError:
    """Translate a pulsar exception; ``what`` names the operation and topic for the message."""
    result = exc.error() if isinstance(exc, PulsarException) else None
    if result in _PERMANENT:
        return PublishRejected(f"{what}: {result}")
    return PulsarUnavailable(f"{what}: {result or exc}")
