"""Freshness pairs each engagement with the first recommendations reflecting it."""

from __future__ import annotations

import json

import pytest
from bench.bench_recs import freshness_lags, profile_version


def test_freshness_lag_is_until_the_first_recommendations_at_that_version_or_later() -> None:
    sent = {("u", 1): 10.0, ("u", 2): 10.5, ("u", 3): 11.0, ("v", 1): 10.2}
    # u's version 2 was never ranked on its own (coalesced): version 3 answers it.
    arrived = {("u", 1): 10.3, ("u", 3): 11.4, ("v", 1): 10.9}

    lags = freshness_lags(sent, arrived)

    assert lags == pytest.approx([0.3, 0.9, 0.4, 0.7])


def test_freshness_leaves_out_engagements_never_answered() -> None:
    assert freshness_lags({("u", 1): 1.0, ("u", 2): 2.0}, {("u", 1): 1.5}) == pytest.approx([0.5])


def test_profile_version_is_read_from_each_stage_output_when_other_versions_are_strings() -> None:
    profile = {"userId": "u", "vector": [0.5], "version": 7}
    candidates = {"userId": "u", "profile": profile, "items": []}
    recommendations = {"userId": "u", "model": {"name": "m", "version": "3"}, "profileVersion": 7}
    for doc in (profile, candidates, recommendations):
        for payload in (json.dumps(doc), json.dumps(doc, separators=(",", ":"))):
            assert profile_version(payload.encode()) == 7
