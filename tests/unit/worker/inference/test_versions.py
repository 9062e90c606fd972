from __future__ import annotations

from streamvane_worker.inference.versions import (
    RETRY_UNSERVED_S,
    VersionChoice,
    announce,
    pick,
    refused,
    served,
)


def test_pick_asks_for_triton_default_when_nothing_was_announced() -> None:
    assert pick(VersionChoice(), now=0) is None


def test_pick_asks_for_the_newest_announced_version_when_one_was_announced() -> None:
    choice = announce(announce(VersionChoice(), 1), 2)
    assert pick(choice, now=0) == 2


def test_pick_falls_back_to_the_version_that_served_when_the_announced_one_is_refused() -> None:
    choice = refused(announce(served(VersionChoice(), 1), 2), 2, now=10)
    assert pick(choice, now=10) == 1
    assert pick(choice, now=10 + RETRY_UNSERVED_S - 0.1) == 1
    assert pick(choice, now=10 + RETRY_UNSERVED_S) == 2, "asked for again after the pause"


def test_pick_asks_for_triton_default_when_every_known_version_is_refused() -> None:
    choice = refused(refused(announce(served(VersionChoice(), 1), 2), 2, now=0), 1, now=0)
    assert pick(choice, now=1) is None


def test_announce_asks_for_a_refused_version_again_when_a_rollback_announces_it() -> None:
    choice = refused(served(announce(VersionChoice(), 1), 1), 1, now=0)
    assert pick(choice, now=0) is None
    assert pick(announce(choice, 1), now=0) == 1


def test_served_clears_a_refusal_when_the_version_scores_again() -> None:
    choice = served(refused(announce(VersionChoice(), 2), 2, now=0), 2)
    assert choice.refused == {} and choice.served == 2
    assert served(choice, 2) is choice, "no new value while nothing changes (the hot path)"
