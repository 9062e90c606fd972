from __future__ import annotations

import json
import subprocess
import sys

import pytest

from streamvane_worker.__main__ import (
    TERMINATION_MESSAGE_PATH_ENV,
    load_config,
    write_termination_message,
)
from streamvane_worker.config import CONFIG_FILE_ENV, CONFIG_JSON_ENV, HEALTH_PORT_ENV

from .harness import make_config


def test_load_config_prefers_inline_json_when_both_env_vars_are_set(tmp_path, monkeypatch) -> None:
    inline = make_config().model_copy(update={"stage": "inline"})
    (tmp_path / "c.json").write_text(make_config().model_dump_json(by_alias=True))
    monkeypatch.setenv(CONFIG_JSON_ENV, inline.model_dump_json(by_alias=True))
    monkeypatch.setenv(CONFIG_FILE_ENV, str(tmp_path / "c.json"))
    assert load_config(None).stage == "inline"


def test_load_config_names_the_source_when_config_is_invalid(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(CONFIG_JSON_ENV, raising=False)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"pipeline": "p"}))
    monkeypatch.setenv(CONFIG_FILE_ENV, str(path))
    with pytest.raises(ValueError, match=str(path)):
        load_config(None)


def test_load_config_overrides_health_port_when_env_var_is_set(monkeypatch) -> None:
    monkeypatch.setenv(CONFIG_JSON_ENV, make_config().model_dump_json(by_alias=True))
    monkeypatch.setenv(HEALTH_PORT_ENV, "18123")
    assert load_config(None).health_port == 18123
    monkeypatch.setenv(HEALTH_PORT_ENV, "not-a-port")
    with pytest.raises(ValueError, match=HEALTH_PORT_ENV):
        load_config(None)


def test_main_exits_2_with_message_when_no_config_is_given(monkeypatch) -> None:
    env = {"PATH": "/usr/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "streamvane_worker"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2 and CONFIG_JSON_ENV in result.stderr


def test_main_writes_termination_message_when_config_is_invalid(tmp_path) -> None:
    message_file = tmp_path / "termination-log"
    env = {
        "PATH": "/usr/bin",
        CONFIG_JSON_ENV: json.dumps({"pipeline": "p"}),
        TERMINATION_MESSAGE_PATH_ENV: str(message_file),
    }
    result = subprocess.run(
        [sys.executable, "-m", "streamvane_worker"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert message_file.read_text().startswith(f"invalid WorkerConfig in ${CONFIG_JSON_ENV}")


def test_write_termination_message_truncates_to_kubelet_limit_when_message_is_long(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv(TERMINATION_MESSAGE_PATH_ENV, str(tmp_path / "log"))
    write_termination_message("x" * 10_000)
    assert len((tmp_path / "log").read_bytes()) == 4096


def test_write_termination_message_creates_no_file_when_kubelet_made_none(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv(TERMINATION_MESSAGE_PATH_ENV, raising=False)
    default = tmp_path / "termination-log"
    monkeypatch.setattr("streamvane_worker.__main__.DEFAULT_TERMINATION_MESSAGE_PATH", default)
    write_termination_message("boom")
    assert not default.exists()
    default.touch()
    write_termination_message("boom")
    assert default.read_text() == "boom"


def test_main_help_documents_every_config_section() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streamvane_worker", "--help"], capture_output=True, text=True
    )
    for field in ("input.subscriptionType", "batching.maxDelayMs", "delivery.deadLetterTopic"):
        assert field in result.stdout
