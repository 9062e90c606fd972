"""Kubernetes API failures, translated at the client boundary."""

from __future__ import annotations

import json

from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


class KubeError(Exception):
    """A Kubernetes API call failed."""


class KubeUnavailable(KubeError):
    """The API server could not be reached or asked us to come back later; retry."""


class KubeRejected(KubeError):
    """The API server refused the request (invalid object, forbidden, conflict)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class KubeNotFound(KubeRejected):
    pass


class KubeNotServed(KubeRejected):
    """The API server does not serve this kind (its CRD is not installed)."""


def translate(error: Exception, action: str) -> KubeError:
    """Map a kubernetes-client or urllib3 exception to ours; ``action`` says what was tried."""
    if isinstance(error, ApiException):
        status = int(error.status or 0)
        detail = _message(error)
        if status in TRANSIENT_STATUSES or status == 0:
            return KubeUnavailable(f"{action}: HTTP {status}: {detail}")
        if status == 404:
            return KubeNotFound(f"{action}: not found", status)
        return KubeRejected(f"{action}: HTTP {status}: {detail}", status)
    if isinstance(error, HTTPError | OSError):
        return KubeUnavailable(f"{action}: API server unreachable: {error}")
    raise TypeError(f"not a Kubernetes client error: {error!r}") from error


def _message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.reason)
