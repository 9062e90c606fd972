"""Errors of the Pulsar adapters, translated from ``pulsar`` exceptions at the boundary."""

from __future__ import annotations

import pulsar


class PulsarError(Exception):
    """Base of every Pulsar adapter error."""


class PulsarUnavailable(PulsarError):
    """The broker cannot be reached (at start, or a send/ack timed out); retry later."""


class PulsarMisconfigured(PulsarError):
    """The connection settings cannot work (token or CA file unreadable, token expired, broker
    certificate not trusted); retrying does not help, the deployment must change."""


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


def from_result(result: pulsar.Result, *, what: str) -> PulsarError:
    """Translate a result code from a pulsar-client callback."""
    if result in _PERMANENT:
        return PublishRejected(f"{what}: {result}")
    return PulsarUnavailable(f"{what}: {result}")


def from_pulsar(exc: Exception, *, what: str) -> PulsarError:
    """Translate an exception raised by pulsar-client (its classes are named after results)."""
    result = getattr(pulsar.Result, type(exc).__name__, None)
    if result is not None:
        return from_result(result, what=what)
    return PulsarUnavailable(f"{what}: {exc}")
