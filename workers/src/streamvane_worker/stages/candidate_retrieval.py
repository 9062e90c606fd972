"""candidate-retrieval: a user profile -> the top-K catalogue items nearest to its interests.

The catalogue (the content pipeline's output) is held in an HNSW index (hnswlib, inner product
on unit vectors, i.e. cosine). It follows the catalogue as it changes, without a rebuild: a new
item is added, a changed item's vector is updated in place, and a deleted or safety-blocked item
is marked deleted (its slot is reused by later adds). A query asks for topK plus the number of
the user's seen items that are live, and drops the seen ones, so topK remain when possible.

hnswlib's adds and queries are not safe to run concurrently. Both run on the event loop's
thread here (catalogue changes are applied by ``Catalogue.follow`` on the loop, queries in
``process``), so they never overlap; the same holds for snapshots.

With ``snapshotDir`` set, the index is saved there with the catalogue position it reflects,
after the initial catch-up, then at most every ``snapshotIntervalS`` while it changes, and when
the worker stops; a restarted replica loads it and reads the catalogue only after that position.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import hnswlib
import numpy as np
import structlog
from prometheus_client import CollectorRegistry, Gauge

from streamvane_worker.config import CandidateRetrievalParams, HnswParams
from streamvane_worker.inference.backend import EMBEDDING_DIM, EmbeddingArray
from streamvane_worker.stages.base import Stage, StageContext, StageKind, StageResult
from streamvane_worker.stages.catalogue import Catalogue, CatalogueItem
from streamvane_worker.stages.following import Following
from streamvane_worker.stages.item import Decision
from streamvane_worker.stages.message import Message
from streamvane_worker.stages.recommendation import Candidate, Candidates, UserProfile

log = structlog.get_logger(__name__)

INITIAL_CAPACITY = 1024
INDEX_FILE = "index.bin"
META_FILE = "index.json"
SCORE_DECIMALS = 6


class ItemIndex:
    """The retrievable catalogue items in an HNSW index; a ``CatalogueListener``."""

    def __init__(
        self,
        params: HnswParams,
        excluded: frozenset[Decision],
        *,
        index: hnswlib.Index | None = None,
        labels: dict[str, int] | None = None,
        next_label: int = 0,
    ) -> None:
        self._params = params
        self._excluded = excluded
        if index is None:
            index = hnswlib.Index(space="ip", dim=EMBEDDING_DIM)
            index.init_index(
                max_elements=INITIAL_CAPACITY,
                ef_construction=params.ef_construction,
                M=params.m,
                allow_replace_deleted=True,
            )
        self._index = index
        self._labels: dict[str, int] = labels or {}
        """Live items' labels. A deleted item's label is forgotten; its slot gets reused."""
        self._ids = {label: item_id for item_id, label in self._labels.items()}
        self._next_label = next_label
        self.changes = 0
        """Grows with every applied change (tells a snapshot it is stale)."""

    def __len__(self) -> int:
        return len(self._labels)

    def upsert(self, item: CatalogueItem) -> None:
        if item.decision in self._excluded:
            self.delete(item.id)
            return
        label = self._labels.get(item.id)
        if label is None:
            if len(self._labels) >= self._index.get_max_elements():
                self._index.resize_index(2 * self._index.get_max_elements())
            label = self._next_label
            self._next_label += 1
            self._labels[item.id] = label
            self._ids[label] = item.id
        self._index.add_items(
            item.vector[np.newaxis, :], [label], num_threads=1, replace_deleted=True
        )
        self.changes += 1

    def delete(self, item_id: str) -> None:
        label = self._labels.pop(item_id, None)
        if label is None:
            return
        del self._ids[label]
        self._index.mark_deleted(label)
        self.changes += 1

    def query(self, vector: EmbeddingArray, k: int, exclude: set[str]) -> list[tuple[str, float]]:
        """The ``k`` live items most similar to ``vector`` that are not in ``exclude``."""
        excluded_live = sum(1 for item_id in exclude if item_id in self._labels)
        fetch = min(k + excluded_live, len(self._labels))
        if fetch == 0 or k == 0:
            return []
        self._index.set_ef(max(self._params.ef_search, fetch))
        labels, distances = self._index.knn_query(vector[np.newaxis, :], k=fetch, num_threads=1)
        found = [
            (self._ids[int(label)], 1.0 - float(distance))
            for label, distance in zip(labels[0], distances[0], strict=True)
        ]
        return [(item_id, score) for item_id, score in found if item_id not in exclude][:k]

    def save(self, directory: Path, position: bytes | None) -> None:
        """Write the index and its catalogue position; replaces a previous snapshot atomically."""
        directory.mkdir(parents=True, exist_ok=True)
        tmp_index = directory / f".{INDEX_FILE}.tmp"
        self._index.save_index(str(tmp_index))
        meta = {
            "params": self._params.model_dump(mode="json"),
            "labels": self._labels,
            "nextLabel": self._next_label,
            "position": base64.b64encode(position).decode() if position else None,
        }
        tmp_meta = directory / f".{META_FILE}.tmp"
        tmp_meta.write_text(json.dumps(meta))
        # The index first: meta names the position, so an index newer than its meta is only
        # replayed over (changes are idempotent), never skipped.
        tmp_index.replace(directory / INDEX_FILE)
        tmp_meta.replace(directory / META_FILE)

    @classmethod
    def load(
        cls, directory: Path, params: HnswParams, excluded: frozenset[Decision]
    ) -> tuple[ItemIndex, bytes | None] | None:
        """A snapshot taken with the same index params, with its position; None if none."""
        try:
            meta = json.loads((directory / META_FILE).read_text())
        except (OSError, ValueError):
            return None
        if meta.get("params") != params.model_dump(mode="json"):
            log.info("snapshot_ignored", reason="index params changed")
            return None
        index = hnswlib.Index(space="ip", dim=EMBEDDING_DIM)
        try:
            index.load_index(str(directory / INDEX_FILE), allow_replace_deleted=True)
        except RuntimeError as e:
            log.warning("snapshot_unreadable", error=str(e))
            return None
        position = base64.b64decode(meta["position"]) if meta["position"] else None
        labels = {str(k): int(v) for k, v in meta["labels"].items()}
        return cls(params, excluded, index=index, labels=labels, next_label=meta["nextLabel"]), (
            position
        )


class Snapshots:
    """Saves the index to ``directory`` when it changed and ``interval_s`` passed, and a last
    time on ``close``."""

    def __init__(
        self, directory: Path | None, interval_s: float, index: ItemIndex, catalogue: Catalogue
    ) -> None:
        self._directory = directory
        self._interval_s = interval_s
        self._index = index
        self._catalogue = catalogue
        self._saved_changes = -1
        self._saved_at = 0.0

    def maybe_save(self, *, force: bool = False) -> None:
        index = self._index
        if self._directory is None or index.changes == self._saved_changes:
            return
        if not force and time.monotonic() - self._saved_at < self._interval_s:
            return
        started = time.perf_counter()
        index.save(self._directory, self._catalogue.position)
        self._saved_changes = index.changes
        self._saved_at = time.monotonic()
        log.info(
            "index_snapshot_saved",
            items=len(index),
            seconds=round(time.perf_counter() - started, 3),
        )

    async def close(self) -> None:
        self.maybe_save(force=True)


class CandidateRetrieval:
    def __init__(
        self,
        params: CandidateRetrievalParams,
        index: ItemIndex,
        catalogue: Catalogue,
        snapshots: Snapshots,
        size: Gauge,
    ) -> None:
        self._params = params
        self._index = index
        self._catalogue = catalogue
        self._snapshots = snapshots
        self._size = size

    async def process(self, items: list[UserProfile]) -> StageResult:
        now = datetime.now(UTC)
        outputs: dict[int, Message] = {}
        for i, user in enumerate(items):
            found = (
                self._index.query(
                    np.asarray(user.vector, dtype=np.float32),
                    self._params.top_k,
                    set(user.recent_items),
                )
                if user.strength > 0
                else []
            )
            outputs[i] = Candidates(
                user_id=user.user_id,
                profile=user,
                items=[
                    Candidate(item_id=item_id, score=round(score, SCORE_DECIMALS))
                    for item_id, score in found
                ],
                index_size=len(self._index),
                retrieved_at=now,
            )
        self._size.set(len(self._index))
        self._snapshots.maybe_save()
        return StageResult(outputs=outputs)


def _index_size_gauge(registry: CollectorRegistry | None, pipeline: str, stage: str) -> Gauge:
    return Gauge(
        "streamvane_worker_index_items",
        "Retrievable catalogue items in the ANN index.",
        ["pipeline", "stage"],
        registry=registry,
    ).labels(pipeline, stage)


async def create(ctx: StageContext) -> Stage[UserProfile]:
    params = CandidateRetrievalParams.model_validate(ctx.params)
    if ctx.topics is None:
        raise ValueError("candidate-retrieval needs broker access")
    excluded = frozenset(
        {Decision.BLOCK, Decision.REVIEW} if params.exclude_review else {Decision.BLOCK}
    )
    directory = Path(params.snapshot_dir) if params.snapshot_dir else None
    loaded = ItemIndex.load(directory, params.index, excluded) if directory else None
    index, position = loaded or (ItemIndex(params.index, excluded), None)
    reader = await ctx.topics.reader(params.catalogue_topic, position)
    catalogue = Catalogue(reader, index, position)
    started = time.perf_counter()
    read = await catalogue.catch_up()
    log.info(
        "catalogue_indexed",
        from_snapshot=loaded is not None,
        records_read=read,
        items=len(index),
        seconds=round(time.perf_counter() - started, 3),
    )
    snapshots = Snapshots(directory, params.snapshot_interval_s, index, catalogue)
    snapshots.maybe_save(force=True)
    ctx.closables.append(Following(catalogue))
    ctx.closables.append(snapshots)  # closed first: saved while the catalogue still follows
    size = _index_size_gauge(ctx.registry, ctx.pipeline, ctx.name)
    size.set(len(index))
    return CandidateRetrieval(params, index, catalogue, snapshots, size)


KIND = StageKind(create, UserProfile, Candidates)
