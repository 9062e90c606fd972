"""kopf's diff-base kept as digests: fixed size, and kopf still sees which field changed."""

from __future__ import annotations

import json
from typing import Any

import kopf

from streamvane_operator.diffbase import DIGESTS, DigestDiffBaseStorage, digests, restore

KEY = "streamvane.io/last-handled-configuration"


def body(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> kopf.Body:
    raw = {
        "apiVersion": "streamvane.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "p", "namespace": "ns", "annotations": annotations or {}},
        "spec": spec,
    }
    return kopf.Body(raw)  # type: ignore[arg-type]


def storage() -> DigestDiffBaseStorage:
    return DigestDiffBaseStorage(prefix="streamvane.io", key="last-handled-configuration")


def stored(spec: dict[str, Any]) -> str:
    patch = kopf.Patch()
    store = storage()
    store.store(body=body(spec), patch=patch, essence=store.build(body=body(spec)))
    return str(patch["metadata"]["annotations"][KEY])


def test_digest_storage_stays_small_when_spec_is_large() -> None:
    huge = {"stages": [{"name": "x" * 100_000}] * 5}

    assert len(stored(huge)) < 200


def test_digest_storage_reports_no_change_when_spec_is_unchanged() -> None:
    spec = {"stages": [{"name": "a"}]}
    store = storage()
    current = body(spec, {KEY: stored(spec)})

    assert store.fetch(body=current) == store.build(body=current)


def test_digest_storage_reports_spec_change_when_spec_differs() -> None:
    store = storage()
    current = body({"stages": [{"name": "b"}]}, {KEY: stored({"stages": [{"name": "a"}]})})

    old = store.fetch(body=current)

    assert old is not None and set(old["spec"]) == {DIGESTS}
    assert old != store.build(body=current)


def test_digest_storage_reads_full_essence_when_written_by_an_older_version() -> None:
    legacy = json.dumps({"spec": {"stages": []}})

    assert storage().fetch(body=body({"stages": []}, {KEY: legacy})) == {"spec": {"stages": []}}


def test_restore_leaves_out_fields_when_they_were_added_since() -> None:
    old = digests({"spec": {"a": 1}})

    assert restore(old, {"spec": {"a": 1}, "metadata": {"labels": {"x": "y"}}}) == {
        "spec": {"a": 1}
    }
