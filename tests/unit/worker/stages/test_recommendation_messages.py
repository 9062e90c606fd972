from __future__ import annotations

from datetime import timedelta

from streamvane_worker.stages.recommendation import Recommendations, UserProfile, request_id

from .recs import T0, axis


def _profile(version: int, user: str = "u", days: int = 0) -> UserProfile:
    return UserProfile(
        user_id=user,
        vector=axis(0),
        strength=1.0,
        event_count=version,
        version=version,
        updated_at=T0 + timedelta(days=days),
    )


def test_request_id_is_the_same_when_the_same_profile_is_ranked_again() -> None:
    assert request_id(_profile(3)) == request_id(_profile(3))


def test_request_id_differs_when_the_version_user_or_profile_time_differs() -> None:
    ids = {
        request_id(_profile(3)),
        request_id(_profile(4)),
        request_id(_profile(3, user="v")),
        request_id(_profile(3, days=1)),  # a user whose state started again
    }
    assert len(ids) == 4


def test_recommendations_decode_when_they_carry_no_request_id() -> None:
    old = {
        "userId": "u",
        "items": [],
        "model": {"name": "m", "version": "1"},
        "userFeatures": axis(0),
        "profileVersion": 1,
        "candidatesScored": 0,
        "rankedAt": T0.isoformat(),
    }
    assert Recommendations.model_validate(old).request_id is None
