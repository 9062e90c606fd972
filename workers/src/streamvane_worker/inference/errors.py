"""Errors of the inference backends, translated from tritonclient / onnxruntime at the boundary.

The runtime only needs to know one thing about a failure: is it the model server's fault and
worth retrying (``BackendUnavailable``), or is it permanent for this input
(``InferenceFailed``), or is the deployment wrong (``ModelMismatch``, ``ModelNotFound``).
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base of every inference error."""


class BackendUnavailable(InferenceError):
    """The model server cannot be reached or is overloaded; retry later."""


class BackendOverloaded(BackendUnavailable):
    """The model server is up but did not answer in time (deadline passed, queue full).

    Still transient, but not retried at once: the server may still be computing the request,
    so an immediate retry only adds to its queue. The message is negative-acked instead.
    """


class VersionNotServed(BackendUnavailable):
    """An explicitly requested model version is not loaded (yet, or any more); other versions
    of the model may serve. Transient: a caller that cannot fall back retries in place."""


class InferenceFailed(InferenceError):
    """The backend rejected or failed this request; retrying the same input will not help."""


class ModelNotFound(InferenceError):
    """The configured model name/version is not served by the backend."""


class ModelMismatch(InferenceError):
    """The served model's tensors do not match what the worker sends and expects."""


class ModelFilesMissing(InferenceError):
    """The ONNX model or tokenizer is not in the cache (run `make models`)."""


_OVERLOAD_GRPC_STATUSES = frozenset(
    {"StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED"}
)


_SHUTTING_DOWN = ("server is stopping", "is not ready", "exiting", "shutting down")
"""Messages Triton answers with while it unloads its models on a graceful shutdown."""


def from_triton(exc: Exception, *, url: str, model: str) -> InferenceError:
    """Translate a ``tritonclient.utils.InferenceServerException`` (or a gRPC error)."""
    status = str(getattr(exc, "status", lambda: "")() or "")
    message = str(getattr(exc, "message", lambda: str(exc))() or exc)
    if status in _OVERLOAD_GRPC_STATUSES:
        return BackendOverloaded(f"Triton at {url} overloaded ({status}): {message}")
    if status == "StatusCode.UNAVAILABLE" or any(m in message.lower() for m in _SHUTTING_DOWN):
        return BackendUnavailable(f"Triton at {url} unavailable ({status}): {message}")
    if status == "StatusCode.NOT_FOUND" or "unknown model" in message.lower():
        return ModelNotFound(f"model {model!r} is not served by Triton at {url}: {message}")
    return InferenceFailed(f"Triton at {url} failed for model {model!r} ({status}): {message}")


def from_onnxruntime(exc: Exception, *, path: str) -> InferenceError:
    """Translate an onnxruntime error (its exception classes share no public base)."""
    if type(exc).__name__ in {"NoSuchFile", "InvalidProtobuf"}:
        return ModelFilesMissing(f"cannot load ONNX model {path}: {exc}; run `make models`")
    return InferenceFailed(f"onnxruntime failed on {path}: {exc}")
