"""What an edit must have checked before it rolls (pure)."""

from __future__ import annotations

from typing import Any

from streamvane_operator.reconcile.preflight import Broker, Model, problem, running_configs, targets
from streamvane_operator.reconcile.status import Failure
from streamvane_worker.config import WorkerConfig


def config(
    service_url: str = "pulsar://p:6650", model: str = "m", **inference: Any
) -> WorkerConfig:
    return WorkerConfig.model_validate(
        {
            "pipeline": "cu",
            "stage": "embed",
            "stageType": "text-embedding",
            "pulsar": {"serviceUrl": service_url},
            "input": {"topic": "persistent://t/n/in", "subscription": "s"},
            "delivery": {"deadLetterTopic": "persistent://t/n/dlq"},
            "inference": {"tritonUrl": "t:8001", "modelName": model, **inference},
        }
    )


def test_targets_are_empty_when_nothing_preflighted_changes() -> None:
    assert targets({"embed": config()}, {"embed": config()}, {}, {}) == []


def test_targets_skip_stages_that_do_not_run_yet() -> None:
    assert targets({"embed": config(model="new")}, {}, {}, {}) == []


def test_targets_name_broker_and_model_when_an_edit_changes_both() -> None:
    found = targets(
        {"embed": config("pulsar://q:6650", "v2")}, {"embed": config()}, {}, {"embed": 750}
    )

    assert found == [Broker("pulsar://q:6650"), Model("t:8001", "v2", "", False, None, 750)]


def test_targets_name_the_model_when_only_its_server_changes() -> None:
    found = targets({"embed": config(tritonUrl="u:8001")}, {"embed": config()}, {}, {})

    assert found == [Model("u:8001", "m", "", False, None, 5000)]


def test_running_configs_reads_each_stages_configmap_and_skips_unparsable_ones() -> None:
    def cm(stage: str, payload: str) -> dict[str, Any]:
        labels = {"streamvane.io/stage": stage}
        return {
            "kind": "ConfigMap",
            "metadata": {"labels": labels},
            "data": {"worker.json": payload},
        }

    found = running_configs([cm("embed", config().model_dump_json(by_alias=True)), cm("x", "{")])

    assert list(found) == ["embed"]


def test_problem_is_preflight_failed_and_says_nothing_rolled_when_a_check_failed() -> None:
    assert problem([]) is None
    found = problem(["Triton at t:8001 does not serve model 'v2'"])
    assert found is not None and found.failure is Failure.PREFLIGHT_FAILED
    assert found.message.startswith("Triton at t:8001 does not serve model 'v2'")
    assert "nothing was rolled" in found.message
