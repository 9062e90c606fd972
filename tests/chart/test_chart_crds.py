"""The chart ships exactly the CRDs generated into crds/ (`make chart-crds` copies them)."""

from __future__ import annotations

from tools.chart import CHART, REPO


def test_chart_crds_match_generated_crds_when_compared_file_by_file() -> None:
    generated = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert generated, "crds/ holds no CRDs"
    assert shipped.keys() == generated.keys(), "run `make chart-crds`"
    drifted = sorted(name for name in generated if shipped[name] != generated[name])
    assert not drifted, f"charts/streamvane/crds out of date ({drifted}): run `make chart-crds`"
