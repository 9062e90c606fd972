"""`helm lint --strict` passes for every CI values file and values.schema.json rejects bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.chart import CHART, CI_VALUES, run_helm

BAD_VALUES = sorted((Path(__file__).parent / "bad-values").glob("*.yaml"))


def _expected_error(values: Path) -> str:
    first_line = values.read_text().splitlines()[0]
    assert first_line.startswith("# expect: "), f"{values.name} must start with '# expect: ...'"
    return first_line.removeprefix("# expect: ")


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_passes_when_values_file_is_from_ci(values: Path) -> None:
    result = run_helm("lint", "--strict", str(CHART), "--values", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_values_cover_both_watch_modes_monitoring_and_leader_election() -> None:
    names = {values.name for values in CI_VALUES}
    assert {
        "default-values.yaml",
        "namespaced-values.yaml",
        "cluster-values.yaml",
        "monitoring-values.yaml",
        "ha-values.yaml",
        "cluster-ha-values.yaml",
    } <= names


@pytest.mark.parametrize("values", BAD_VALUES, ids=lambda p: p.stem)
def test_helm_lint_and_template_fail_when_values_break_the_schema(values: Path) -> None:
    expected = _expected_error(values)
    lint = run_helm("lint", "--strict", str(CHART), "--values", str(values))
    template = run_helm("template", "streamvane", str(CHART), "--values", str(values))
    assert lint.returncode != 0 and expected in lint.stdout + lint.stderr
    assert template.returncode != 0 and expected in template.stderr
