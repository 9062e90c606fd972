"""Drift tests: CRD files match the models; samples validate against CRDs and models;
rendered Deployments carry a WorkerConfig the worker accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from streamvane_operator.api.backend import InferenceBackendSpec
from streamvane_operator.api.crd import KINDS, crd
from streamvane_operator.api.crdgen import stale_files
from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.render.labels import Owner
from streamvane_operator.render.pipeline import render_pipeline
from streamvane_operator.render.worker import WorkerDefaults
from streamvane_worker.config import CONFIG_FILE_ENV, WorkerConfig

ROOT = Path(__file__).resolve().parents[4]
CRDS = ROOT / "crds"
SAMPLES = sorted((CRDS / "samples").glob("*.yaml"))
MODELS = {k.kind: k.spec for k in KINDS}


def validator(kind: str) -> jsonschema.Draft4Validator:
    # OpenAPI v3.0 schemas are JSON Schema draft 4 plus x-kubernetes-* extensions.
    by_kind = {k.kind: k for k in KINDS}
    schema = crd(by_kind[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft4Validator(schema)


def samples() -> list[dict[str, Any]]:
    return [doc for path in SAMPLES for doc in yaml.safe_load_all(path.read_text()) if doc]


def content_pipeline() -> dict[str, Any]:
    path = CRDS / "samples" / "pipeline-content-understanding.yaml"
    return dict(yaml.safe_load(path.read_text()))


def local_backend() -> InferenceBackendSpec:
    doc = yaml.safe_load((CRDS / "samples" / "inferencebackend-triton-local.yaml").read_text())
    return InferenceBackendSpec.model_validate(doc["spec"])


def test_crd_files_match_models_when_generated() -> None:
    assert stale_files(CRDS) == [], "CRDs are stale: run `make crds`"


def test_samples_exist_for_every_kind() -> None:
    assert {doc["kind"] for doc in samples()} == set(MODELS)


@pytest.mark.parametrize("doc", samples(), ids=lambda d: d["metadata"]["name"])
def test_sample_validates_against_crd_schema_and_model(doc: dict[str, Any]) -> None:
    validator(doc["kind"]).validate(doc)
    MODELS[doc["kind"]].model_validate(doc["spec"])


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("stages", 0, "type"), "translate"),
        (("stages", 0, "scaling", "minReplicas"), -1),
        (("stages", 0, "name"), "Embed_Stage"),
        (("stages", 0, "input", "subscriptionType"), "Exclusive"),
        (("deletionPolicy"), "Purge"),
        (("stages", 0, "resources", "requests", "cpu"), "lots"),
        (("stages", 0, "batching", "maxBatchSize"), 0),
        (("topics", "partitions"), 1000),
    ],
)
def test_crd_schema_refuses_pipeline_when_field_is_invalid(path: Any, value: Any) -> None:
    doc = content_pipeline()
    node = doc["spec"]
    keys = path if isinstance(path, tuple) else (path,)
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value

    with pytest.raises(jsonschema.ValidationError):
        validator("Pipeline").validate(doc)


def test_crd_schema_refuses_pipeline_when_required_field_is_missing() -> None:
    doc = content_pipeline()
    del doc["spec"]["pulsar"]["namespace"]

    with pytest.raises(jsonschema.ValidationError, match="namespace"):
        validator("Pipeline").validate(doc)


def test_rendered_deployments_carry_worker_config_when_sample_is_rendered() -> None:
    spec = PipelineSpec.model_validate(content_pipeline()["spec"])
    owner = Owner("streamvane.io/v1alpha1", "Pipeline", "content-understanding", "media", "uid-1")

    rendered = render_pipeline(
        owner, spec, {"triton-local": local_backend()}, WorkerDefaults(image="worker:test")
    )

    config_maps = {o["metadata"]["name"]: o for o in rendered.objects if o["kind"] == "ConfigMap"}
    deployments = [o for o in rendered.objects if o["kind"] == "Deployment"]
    assert len(deployments) == len(spec.stages) == 3
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"]}
        config_path = Path(env[CONFIG_FILE_ENV])
        mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
        assert config_path.parent == Path(mount["mountPath"])
        volume = next(v for v in pod["volumes"] if v["name"] == "config")
        data = config_maps[volume["configMap"]["name"]]["data"][config_path.name]
        config = WorkerConfig.model_validate_json(data)
        assert config.pipeline == "content-understanding"
        assert config.inference is not None and config.inference.triton_url == "127.0.0.1:8001"
        assert config.input.topic.startswith("persistent://streamvane/content/")


def schema_nodes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node, *[n for v in node.values() for n in schema_nodes(v)]]
    if isinstance(node, list):
        return [n for v in node for n in schema_nodes(v)]
    return []


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_crd_bounds_every_string_and_list_when_generated(kind: Any) -> None:
    spec = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    nodes = schema_nodes(spec)

    assert not [n for n in nodes if n.get("x-kubernetes-preserve-unknown-fields")]
    unbounded = [
        n.get("description", "?")
        for n in nodes
        if len(n) > 1  # not a branch of an int-or-string
        and (n.get("type") == "string" and "maxLength" not in n and "enum" not in n)
        or (n.get("type") == "array" and "maxItems" not in n)
        or (n.get("type") == "object" and "additionalProperties" in n and "maxProperties" not in n)
    ]
    assert unbounded == []


def test_crd_types_params_per_stage_type_when_generated() -> None:
    (pipeline,) = [k for k in KINDS if k.kind == "Pipeline"]
    schema = crd(pipeline)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    stage = schema["properties"]["spec"]["properties"]["stages"]["items"]

    assert set(stage["properties"]["params"]["properties"]) == {
        "labels",
        "topK",
        "minScore",
        "minMargin",
        "mode",
        "headModel",
        "calibration",
        "categories",
        "catalogueTopic",
        "halfLifeS",
        "eventWeights",
        "dwellWeight",
        "dwellCapMs",
        "historySize",
        "maxUsers",
        "userTtlS",
        "excludeReview",
        "index",
        "snapshotDir",
        "snapshotIntervalS",
        "modelVersionsTopic",
        "engagementsTopic",
        "windowSeconds",
        "allowedLatenessSeconds",
        "idleFlushSeconds",
        "positiveEvents",
        "minDwellMs",
        "negatives",
        "negativeSampleRate",
        "lateTopic",
        "maxRequests",
        "modelRepository",
        "exportEveryExamples",
        "exportIntervalS",
        "evaluationExamples",
        "promotionMargin",
        "learningRate",
        "pinnedVersion",
        "keepVersions",
    }
    messages = [r["message"] for r in stage["x-kubernetes-validations"]]
    assert "stage type tagging needs params.labels" in messages
    assert "params.categories is only for stage type safety" in messages
    assert "stage type training-examples needs params.engagementsTopic" in messages
    assert "stage type online-training needs params.modelRepository" in messages
    assert any(m.startswith("stage type online-training learns from every") for m in messages)
    assert schema["properties"]["metadata"]["properties"]["name"]["maxLength"] == 63
    assert "size(self.metadata.name)" in schema["x-kubernetes-validations"][0]["rule"]
