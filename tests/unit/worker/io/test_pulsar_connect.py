"""Connection setup: the token file is re-read on each authentication (no network)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from streamvane_worker.io.errors import PulsarMisconfigured
from streamvane_worker.io.pulsar import TokenFile


def jwt(exp: float | None = None, sub: str = "worker") -> str:
    """An unsigned-looking JWT: TokenFile reads claims, the broker verifies signatures."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    claims: dict[str, object] = {"sub": sub} | ({"exp": exp} if exp is not None else {})
    return f"{part({'alg': 'HS256'})}.{part(claims)}.c2ln"


def test_token_file_returns_the_new_token_when_the_file_is_rotated(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(jwt(sub="first") + "\n")
    supplier = TokenFile(path)
    assert supplier() == jwt(sub="first")

    path.write_text(jwt(sub="second"))

    assert supplier() == jwt(sub="second")


def test_token_file_keeps_the_last_token_when_the_file_vanishes_mid_rotation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "token"
    path.write_text(jwt(sub="first"))
    supplier = TokenFile(path)

    path.unlink()

    assert supplier() == jwt(sub="first")


@pytest.mark.parametrize(
    ("content", "named"),
    [(None, "cannot read the token file"), ("", "is empty"), (jwt(exp=1.0), "expired at 1970")],
    ids=["missing", "empty", "expired"],
)
def test_token_file_refuses_to_start_when_the_token_cannot_work(
    tmp_path: Path, content: str | None, named: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)

    with pytest.raises(PulsarMisconfigured, match=named):
        TokenFile(path)


def test_token_file_accepts_a_token_that_is_not_a_jwt_or_not_yet_expired(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("opaque-token")
    assert TokenFile(path)() == "opaque-token"
    valid = jwt(exp=time.time() + 3600)
    path.write_text(valid)
    assert TokenFile(path)() == valid
