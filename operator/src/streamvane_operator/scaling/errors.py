"""Errors of the autoscaler's own reads (Triton metrics); Pulsar's are in pulsar/errors.py."""

from __future__ import annotations


class MetricsUnavailable(Exception):
    """A metrics endpoint could not be read or parsed."""
