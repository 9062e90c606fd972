"""The recommendation demo's summaries and its news-article catalogue."""

from __future__ import annotations

import numpy as np
import pytest

from streamvane_demo import corpus, recs
from streamvane_demo import simulator as sim


def _axis(k: int) -> sim.Vector:
    v = np.zeros(4, dtype=np.float32)
    v[k] = 1.0
    return v


VECTORS = {f"i{k}": _axis(k) for k in range(4)}
USER = sim.User("u", ("x",), _axis(0))


def _served(version: str, *items: str) -> sim.Served:
    shown = tuple(sim.Shown(i, 0.5) for i in items)
    return sim.Served("u", None, 1, len(items), shown, model_version=version)


def test_rounds_on_new_version_counts_rounds_scored_only_by_versions_after_the_first() -> None:
    def lists(*versions: str) -> dict[str, sim.Served]:
        return {f"u{n}": _served(v, "i0") for n, v in enumerate(versions)}

    served = [lists("1", "1"), lists("1", "1"), lists("1", "2"), lists("2", "2"), lists("3", "2")]
    assert recs.rounds_on_new_version(served) == 2
    assert recs.rounds_on_new_version(served[:3]) == 0, "a round still partly on v1"
    assert recs.rounds_on_new_version([]) == 0


def test_rounds_summary_gives_each_rounds_versions_taste_match_and_users_improved() -> None:
    better = sim.Trajectory(USER, (_served("1", "i1"), _served("2", "i0", "i1")))
    worse = sim.Trajectory(USER, (_served("1", "i0"), _served("1", "i2")))

    first, second = recs.rounds_summary([better, worse], VECTORS)

    assert first == recs.Round(0, {"1": 2}, taste_match=0.5, improved=0)
    assert second == recs.Round(1, {"1": 1, "2": 1}, taste_match=0.25, improved=1)
    assert recs.rounds_summary([], VECTORS) == []


ARTICLE = "Headline one\n\nFirst paragraph.\n\nSecond.\n\nThird.\n\nFourth."


def test_content_items_are_the_first_articles_of_each_topic_as_content_items() -> None:
    articles = [("tech", ARTICLE), ("tech", "Only a headline"), ("tech", ARTICLE), ("odd", ARTICLE)]

    items = corpus.content_items(articles, per_topic=2)

    assert [i["id"] for i in items] == ["bbc-odd-000", "bbc-tech-000", "bbc-tech-001"]
    assert items[1] | {"transcript": ""} == {
        "id": "bbc-tech-000",
        "title": "Headline one",
        "description": "First paragraph.",
        "transcript": "",
        "language": "en",
        "creator": "bbc_news",
        "category": "technology",
    }
    assert items[1]["transcript"] == "Second."
    assert items[2]["description"] == items[2]["title"] == "Only a headline"
    assert items[0]["category"] == "odd", "a topic without a demo category keeps its name"


def test_the_packaged_corpus_has_five_topics_each_mapped_to_a_demo_category() -> None:
    try:
        articles = corpus.bbc_articles()
    except LookupError as missing:
        pytest.fail(str(missing))
    assert {topic for topic, _ in articles} == set(corpus.DEMO_CATEGORIES)
    assert len(articles) > 2000
