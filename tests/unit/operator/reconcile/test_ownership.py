"""Ownership decisions (pure): objects by owner reference, topics by owner property."""

from __future__ import annotations

from streamvane_operator.api.pipeline import InitialPosition, PipelineSpec
from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.reconcile.ownership import (
    ObservedTopic,
    foreign_outputs,
    object_conflicts,
    starts_earliest,
)
from streamvane_operator.render.topology import topology

ME = "media/cu"


def config_map(owner_uid: str | None) -> dict[str, object]:
    refs = [{"kind": "Pipeline", "name": "other", "uid": owner_uid}] if owner_uid else []
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cu-embed", "namespace": "media", "ownerReferences": refs},
    }


def test_object_conflicts_names_the_object_when_someone_else_owns_it() -> None:
    desired = config_map("uid-me")
    found = {ObjectRef.of(desired): config_map("uid-other")}

    (problem,) = object_conflicts([desired], found, "uid-me")

    assert "ConfigMap media/cu-embed already exists" in problem
    assert "owned by Pipeline other" in problem and "rename" in problem


def test_object_conflicts_refuses_an_object_when_it_has_no_owner() -> None:
    desired = config_map("uid-me")

    (problem,) = object_conflicts([desired], {ObjectRef.of(desired): config_map(None)}, "uid-me")

    assert "owned by nobody" in problem


def test_object_conflicts_is_empty_when_objects_are_ours_or_missing() -> None:
    desired = config_map("uid-me")

    assert object_conflicts([desired], {}, "uid-me") == []
    assert object_conflicts([desired], {ObjectRef.of(desired): desired}, "uid-me") == []


def spec() -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "pulsar": {"namespace": "content"},
            "stages": [
                {"name": "a", "type": "passthrough", "input": {"topic": "in"}, "outputs": ["out"]}
            ],
        }
    )


def test_foreign_outputs_refuses_another_pipelines_topic_when_not_shared() -> None:
    topo = topology("media", "cu", spec())
    observed = {"out": ObservedTopic(0, "other-ns/other")}

    (problem,) = foreign_outputs(topo, ME, observed, frozenset())

    assert "belongs to Pipeline other-ns/other" in problem and "spec.sharedOutputs" in problem
    assert foreign_outputs(topo, ME, observed, frozenset({"out"})) == []


def test_foreign_outputs_allows_topics_when_ours_or_unowned() -> None:
    topo = topology("media", "cu", spec())
    observed = {"out": ObservedTopic(0, ME), "cu-a-dlq": ObservedTopic(0, None)}

    assert foreign_outputs(topo, ME, observed, frozenset()) == []


def test_foreign_outputs_ignores_inputs_when_another_pipeline_owns_them() -> None:
    topo = topology("media", "cu", spec())

    assert foreign_outputs(topo, ME, {"in": ObservedTopic(0, "x/other")}, frozenset()) == []


def test_starts_earliest_on_own_or_new_topics_and_latest_on_others() -> None:
    observed = {"mine": ObservedTopic(0, ME), "theirs": ObservedTopic(0, "x/y")}

    assert starts_earliest(None, "new", ME, observed)
    assert starts_earliest(None, "mine", ME, observed)
    assert not starts_earliest(None, "theirs", ME, observed)
    assert not starts_earliest(None, "unowned", ME, {"unowned": ObservedTopic(0, None)})
    assert starts_earliest(InitialPosition.EARLIEST, "theirs", ME, observed)
    assert not starts_earliest(InitialPosition.LATEST, "new", ME, observed)
