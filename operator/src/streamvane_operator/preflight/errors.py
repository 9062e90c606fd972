"""What a preflight check found wrong; the message names the server and what to change."""

from __future__ import annotations


class PreflightError(Exception):
    """The broker or the model a spec points at is not there."""
