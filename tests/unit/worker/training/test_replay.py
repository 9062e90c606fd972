"""``streamvane train --replay``: the online learner against its frozen copy on a drifting stream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from streamvane_worker.cli import app
from streamvane_worker.training.replay import ReplayError, ReplaySettings, replay

DIM = 16


def drifting_stream(n: int, drift_at: int, seed: int = 0) -> list[str]:
    """JSON lines of (user, item) examples whose label follows each user's taste; at
    ``drift_at`` every taste flips the sign of half its dimensions while the ``user`` feature
    stays: a model frozen before the drift keeps ranking by the old tastes."""
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(50, DIM))
    users /= np.linalg.norm(users, axis=1, keepdims=True)
    flip = np.where(np.arange(DIM) < DIM // 2, -1.0, 1.0)
    lines = []
    for t in range(n):
        u = int(rng.integers(len(users)))
        item = rng.normal(size=DIM)
        item /= np.linalg.norm(item)
        taste = users[u] * (flip if t >= drift_at else 1.0)
        label = int(rng.random() < 1 / (1 + np.exp(-8 * float(taste @ item))))
        features = {
            "user": users[u].tolist(),
            "item": item.tolist(),
            "retrievalScore": float(users[u] @ item),
        }
        lines.append(
            json.dumps({"label": label, "ts": 1_700_000_000_000 + 1000 * t, "features": features})
        )
    return lines


def test_online_learning_overtakes_the_frozen_model_after_a_drift() -> None:
    lines = drifting_stream(12_000, drift_at=6_000)
    result = replay(lines, ReplaySettings(warmup=4_000, window=2_000))
    assert result.examples == 12_000
    assert result.warmup == 4_000
    assert [w.examples for w in result.windows] == [2_000] * 4
    before, after = result.windows[:1], result.windows[-2:]
    # Before the drift both know the tastes; after it only the online learner does.
    assert all(abs(w.online_auc - w.frozen_auc) < 0.03 and w.online_auc > 0.8 for w in before)
    assert all(w.online_auc > w.frozen_auc + 0.15 for w in after)
    assert result.online_auc > result.frozen_auc + 0.1
    assert result.layout == "user*item[16], retrievalScore"


def test_invalid_lines_are_skipped_counted_and_named() -> None:
    lines = drifting_stream(600, drift_at=10_000)
    lines[10] = "not json"
    lines[20] = json.dumps({"label": 1, "ts": 5, "features": {"user": [1.0], "item": [1.0]}})
    lines[30] = ""
    result = replay(lines, ReplaySettings(warmup=100, window=100))
    assert result.examples == 597
    assert result.skipped.count == 2
    assert result.skipped.reasons[0].startswith("line 11:")
    assert result.skipped.reasons[1].startswith("line 21: features differ")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "no training examples"),
        (["{}", "[1]"], "no valid training example: 2 invalid lines"),
        (drifting_stream(50, drift_at=100), "warm-up .* covers all 50"),
    ],
)
def test_what_cannot_be_replayed_is_an_error_that_says_why(lines: list[str], message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        replay(lines, ReplaySettings(warmup=100))


def test_cli_prints_one_json_object_with_the_aucs(tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    path.write_text("\n".join(drifting_stream(3_000, drift_at=2_000)) + "\n")
    result = CliRunner().invoke(app, ["train", "--replay", str(path), "--warmup", "1000", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["examples"] == 3_000
    assert summary["evaluated"] == 2_000
    assert 0 <= summary["frozen_auc"] < summary["online_auc"] <= 1


def test_cli_prints_the_auc_table_and_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    path.write_text("\n".join(drifting_stream(1_500, drift_at=10_000)) + "\n")
    table = CliRunner().invoke(
        app, ["train", "--replay", str(path), "--warmup", "500", "--window", "500"]
    )
    assert table.exit_code == 0, table.output
    assert "progressive AUC over time" in table.stdout
    assert "1,500 examples" in table.stdout
    short = CliRunner().invoke(app, ["train", "--replay", str(path), "--warmup", "5000"])
    assert short.exit_code == 1
    assert "streamvane train: the warm-up (5000 examples) covers all 1500" in short.stderr
