"""Pulsar admin failures, translated at the client boundary."""

from __future__ import annotations

import html
import re
import ssl

import httpx

TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})


class PulsarError(Exception):
    """A Pulsar admin call failed."""


class PulsarUnavailable(PulsarError):
    """The admin endpoint could not be reached or failed on its side; retry later."""


class PulsarRejected(PulsarError):
    """Pulsar refused the request (bad name, no permission, wrong state)."""

    def __init__(self, message: str, status: int, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        """Pulsar's own words for the refusal."""


class PulsarUnauthorized(PulsarRejected):
    """Pulsar refused the credentials (HTTP 401: no or invalid token; 403: not permitted)."""


class PulsarMisconfigured(PulsarError):
    """The connection cannot work as configured: the broker's TLS certificate is not trusted,
    or the CA bundle is unusable. Retrying does not help; the spec or its Secrets must change."""


class PulsarNotFound(PulsarRejected):
    pass


class PulsarConflict(PulsarRejected):
    """The resource already exists."""


class PulsarIncompatibleSchema(PulsarRejected):
    """The schema registry refused a schema: it fails the topic's compatibility strategy
    against the registered versions (the message holds the registry's reason)."""


def from_response(response: httpx.Response, action: str) -> PulsarError:
    status = response.status_code
    detail = _reason(response)
    if status in TRANSIENT_STATUSES:
        return PulsarUnavailable(f"{action}: HTTP {status}: {detail}")
    if status in (401, 403):
        what = "no or invalid token" if status == 401 else "the token's role may not do this"
        return PulsarUnauthorized(f"{action}: HTTP {status} ({what}): {detail}", status)
    if status == 404:
        return PulsarNotFound(f"{action}: not found: {detail}", status)
    if status == 409:
        return PulsarConflict(f"{action}: already exists: {detail}", status, detail)
    return PulsarRejected(f"{action}: HTTP {status}: {detail}", status, detail)


def from_transport(error: httpx.TransportError, action: str) -> PulsarError:
    untrusted = _certificate_error(error)
    if untrusted is not None:
        return PulsarMisconfigured(
            f"{action}: the server's TLS certificate is not trusted ({untrusted})"
        )
    return PulsarUnavailable(f"{action}: {type(error).__name__}: {error or 'no response'}")


def _certificate_error(error: BaseException) -> str | None:
    """The verification failure behind a transport error, if that is what it is."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen)
        seen = seen.__cause__ or seen.__context__
    return "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in str(error) else None


HTML_TITLE = re.compile(r"<title>Error \d+ (.*?)</title>", re.DOTALL)
"""Jetty's error page, which Pulsar answers some errors with (an incompatible schema)."""
REASON_MAX = 2000


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json()["reason"])
    except (ValueError, KeyError, TypeError):
        pass
    page = HTML_TITLE.search(response.text)
    if page is not None:
        return html.unescape(page.group(1)).strip()[:REASON_MAX]
    return response.text.strip()[:200] or response.reason_phrase
