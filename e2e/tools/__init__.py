"""Tooling for the chart and image checks: Go tool installs, schema conversion, kind e2e."""
