"""Pulsar admin failures, translated at the client boundary."""

from __future__ import annotations

import httpx

TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})


class PulsarError(Exception):
    """A Pulsar admin call failed."""


class PulsarUnavailable(PulsarError):
    """The admin endpoint could not be reached or failed on its side; retry later."""


class PulsarRejected(PulsarError):
    """Pulsar refused the request (bad name, no permission, wrong state)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class PulsarNotFound(PulsarRejected):
    pass


class PulsarConflict(PulsarRejected):
    """The resource already exists."""


def from_response(response: httpx.Response, action: str) -> PulsarError:
    status = response.status_code
    detail = _reason(response)
    if status in TRANSIENT_STATUSES:
        return PulsarUnavailable(f"{action}: HTTP {status}: {detail}")
    if status == 404:
        return PulsarNotFound(f"{action}: not found: {detail}", status)
    if status == 409:
        return PulsarConflict(f"{action}: already exists: {detail}", status)
    return PulsarRejected(f"{action}: HTTP {status}: {detail}", status)


def from_transport(error: httpx.TransportError, action: str) -> PulsarUnavailable:
    return PulsarUnavailable(f"{action}: {type(error).__name__}: {error or 'no response'}")


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json()["reason"])
    except (ValueError, KeyError, TypeError):
        return response.text.strip()[:200] or response.reason_phrase
