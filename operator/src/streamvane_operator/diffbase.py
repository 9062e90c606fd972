"""kopf's last-handled state as digests: an annotation of fixed size, whatever the spec's size.

kopf keeps the last handled "essence" (spec, labels, annotations) to tell a real change from
its own patches. Its annotation storage keeps a full copy, which fails every patch once a
spec nears the 256 kB annotation limit (the Pipeline can then never be handled or deleted).
Our handlers reconcile the whole spec and never read kopf's per-field diff, so a digest per
top-level field is enough: kopf still sees which fields changed (``spec`` for the update
handlers), just not how.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

import kopf

DIGESTS = "sha256"
"""The one key of the stored value; a full essence (older operator versions) has none such."""


def digest(value: Any) -> str:
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def digests(essence: dict[str, Any]) -> dict[str, str]:
    return {key: digest(value) for key, value in essence.items()}


def restore(stored: dict[str, str], current: dict[str, Any]) -> dict[str, Any]:
    """An essence that differs from ``current`` exactly in the fields whose digest changed:
    unchanged fields are ``current``'s, changed ones a placeholder holding the old digest,
    and fields added since are left out."""
    return {
        key: current[key] if key in current and digest(current[key]) == old else {DIGESTS: old}
        for key, old in stored.items()
    }


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """``kopf.AnnotationsDiffBaseStorage`` that stores digests instead of the essence."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        for key in self.make_keys(self.key, body=body):
            encoded = body.metadata.annotations.get(key)
            if encoded is None:
                continue
            decoded = json.loads(encoded)
            if not isinstance(decoded, dict) or set(decoded) != {DIGESTS}:
                return cast(kopf.BodyEssence, decoded)  # a full essence, stored before
            current = dict(self.build(body=body))
            return cast(kopf.BodyEssence, restore(decoded[DIGESTS], current))
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        encoded = json.dumps({DIGESTS: digests(dict(essence))}, separators=(",", ":")) + "\n"
        for key in self.make_keys(self.key, body=body):
            patch.metadata.annotations[key] = encoded
        self._store_marker(prefix=self.prefix, patch=patch, body=body)
