"""Pure rendering of a stage's Kubernetes objects, the worker config and the Pulsar topology."""

from __future__ import annotations

import json
from typing import Any

from streamvane_operator.api.backend import InferenceBackendSpec, ManagedSpec, ModelRepository
from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.render.backend import render_managed, resolve
from streamvane_operator.render.labels import CONFIG_HASH_ANNOTATION, Owner
from streamvane_operator.render.pipeline import RenderedPipeline, render_pipeline
from streamvane_operator.render.topology import topology
from streamvane_operator.render.worker import WorkerDefaults
from streamvane_worker.config import CONFIG_FILE_ENV

OWNER = Owner("streamvane.io/v1alpha1", "Pipeline", "cu", "media", "uid-1")
DEFAULTS = WorkerDefaults(image="worker:default")


def raw_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "pulsar": {"namespace": "content"},
        "stages": [
            {
                "name": "embed",
                "type": "passthrough",
                "input": {"topic": "items"},
                "outputs": ["embedded"],
                "scaling": {"minReplicas": 2, "maxReplicas": 4},
                "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "2Gi"}},
            }
        ],
    }
    spec.update(overrides)
    return spec


def objects(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rendered = render_pipeline(OWNER, PipelineSpec.model_validate(spec), {}, DEFAULTS)
    return {o["kind"]: o for o in rendered.objects}


def container(spec: dict[str, Any]) -> dict[str, Any]:
    return dict(objects(spec)["Deployment"]["spec"]["template"]["spec"]["containers"][0])


def test_render_stage_runs_worker_module_when_deployment_is_rendered() -> None:
    worker = container(raw_spec())

    assert worker["command"] == ["python", "-m", "streamvane_worker"]
    assert {"name": CONFIG_FILE_ENV, "value": "/etc/streamvane/worker.json"} in worker["env"]
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert worker["ports"] == [{"name": "http", "containerPort": 8080}]
    assert worker["resources"] == {"requests": {"cpu": "1"}, "limits": {"memory": "2Gi"}}


def test_render_stage_runs_non_root_with_read_only_root_when_deployment_is_rendered() -> None:
    deployment = objects(raw_spec())["Deployment"]
    pod = deployment["spec"]["template"]["spec"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    security = pod["containers"][0]["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]


def test_render_stage_labels_and_owns_every_object_when_rendered() -> None:
    for obj in objects(raw_spec()).values():
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "streamvane"
        assert labels["streamvane.io/pipeline"] == "cu"
        assert labels["streamvane.io/stage"] == "embed"
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["uid"] == "uid-1" and ref["controller"] is True


def fixed(replicas: int) -> dict[str, Any]:
    spec = raw_spec()
    spec["stages"][0]["scaling"] = {"minReplicas": replicas, "maxReplicas": replicas}
    return spec


def test_render_stage_sets_replicas_when_scaling_is_fixed() -> None:
    deployment = objects(fixed(2))["Deployment"]

    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_render_stage_leaves_replicas_to_the_autoscaler_when_stage_is_autoscaled() -> None:
    deployment = objects(raw_spec())["Deployment"]

    assert "replicas" not in deployment["spec"]


def test_render_stage_renders_no_scaled_object_when_engine_is_builtin() -> None:
    assert "ScaledObject" not in objects(raw_spec())


def test_render_stage_selects_stage_pods_when_service_and_pdb_are_rendered() -> None:
    rendered = objects(raw_spec())
    selector = {"streamvane.io/pipeline": "cu", "streamvane.io/stage": "embed"}

    assert rendered["Service"]["spec"]["selector"] == selector
    assert rendered["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    assert rendered["Deployment"]["spec"]["selector"]["matchLabels"] == selector


def test_render_stage_changes_config_hash_only_when_worker_config_changes() -> None:
    def config_hash(spec: dict[str, Any]) -> str:
        template = objects(spec)["Deployment"]["spec"]["template"]
        return str(template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])

    base = config_hash(raw_spec())
    bigger_batches = raw_spec()
    bigger_batches["stages"][0]["batching"] = {"maxBatchSize": 64}
    more_cpu = raw_spec()
    more_cpu["stages"][0]["resources"] = {"requests": {"cpu": "2"}}

    assert config_hash(raw_spec()) == base
    assert config_hash(bigger_batches) != base
    assert config_hash(more_cpu) == base


def test_render_stage_prefers_stage_image_then_pipeline_image_when_set() -> None:
    with_pipeline_image = raw_spec(image="worker:pipeline")
    with_stage_image = raw_spec(image="worker:pipeline")
    with_stage_image["stages"][0]["image"] = "worker:stage"

    assert container(raw_spec())["image"] == "worker:default"
    assert container(with_pipeline_image)["image"] == "worker:pipeline"
    assert container(with_stage_image)["image"] == "worker:stage"


def pod_secret_mount(rendered: RenderedPipeline, volume_name: str) -> tuple[Any, Any]:
    """The Secret source of a pod volume, and where the worker container mounts it."""
    pod = next(o for o in rendered.objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == volume_name)
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume_name)
    return volume["secret"], mount


def test_render_stage_mounts_token_when_pulsar_auth_secret_is_set() -> None:
    spec = raw_spec(pulsar={"namespace": "content", "authSecretRef": {"name": "pulsar-jwt"}})
    rendered = render_pipeline(OWNER, PipelineSpec.model_validate(spec), {}, DEFAULTS)

    secret, mount = pod_secret_mount(rendered, "pulsar")
    assert secret == {"secretName": "pulsar-jwt", "items": [{"key": "token", "path": "token"}]}
    assert mount["readOnly"] is True
    token = rendered.configs["embed"].pulsar.auth_token_file
    assert str(token) == f"{mount['mountPath']}/token" == "/var/run/secrets/streamvane/pulsar/token"


def embedding_spec() -> dict[str, Any]:
    spec = raw_spec()
    spec["stages"][0] |= {"type": "text-embedding", "model": {"backend": "tls", "name": "m"}}
    return spec


def test_render_stage_mounts_the_backends_ca_when_its_endpoint_uses_tls() -> None:
    tls = {"enabled": True, "caSecretRef": {"name": "triton-ca", "key": "ca.pem"}}
    backend = InferenceBackendSpec.model_validate({"endpoint": {"url": "t:8001", "tls": tls}})
    spec = PipelineSpec.model_validate(embedding_spec())
    rendered = render_pipeline(OWNER, spec, {"tls": backend}, DEFAULTS)

    secret, mount = pod_secret_mount(rendered, "triton-ca")
    assert secret == {"secretName": "triton-ca", "items": [{"key": "ca.pem", "path": "ca.crt"}]}
    inference = rendered.configs["embed"].inference
    assert inference is not None and inference.tls
    assert str(inference.tls_ca_file) == f"{mount['mountPath']}/ca.crt"


def test_render_stage_trusts_system_roots_when_a_tls_backend_names_no_ca() -> None:
    tls_only = {"endpoint": {"url": "t:8001", "tls": {"enabled": True}}}
    backends = {"tls": InferenceBackendSpec.model_validate(tls_only)}
    rendered = render_pipeline(
        OWNER, PipelineSpec.model_validate(embedding_spec()), backends, DEFAULTS
    )

    inference = rendered.configs["embed"].inference
    assert inference is not None and inference.tls and inference.tls_ca_file is None
    deployment = next(o for o in rendered.objects if o["kind"] == "Deployment")
    assert [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]] == [
        "config",
        "tmp",
    ]


def test_topology_lists_data_topics_then_non_partitioned_dead_letters_when_rendered() -> None:
    spec = PipelineSpec.model_validate(raw_spec(topics={"partitions": 4}))

    topo = topology("media", "cu", spec)

    assert [(t.name, t.partitions) for t in topo.topics] == [
        ("items", 4),
        ("embedded", 4),
        ("cu-embed-dlq", 0),
        ("cu-embed-dlq-attempts", 0),
    ]
    (sub,) = topo.subscriptions
    assert (sub.stage, sub.topic, sub.name) == ("embed", "items", "media.cu-embed")


def test_render_managed_requests_gpus_and_exposes_grpc_when_backend_is_managed() -> None:
    spec = ManagedSpec(model_repository=ModelRepository(uri="s3://models/triton"), gpus=2)
    owner = Owner("streamvane.io/v1alpha1", "InferenceBackend", "gpu", "media", "uid-2")

    deployment, service = render_managed(owner, spec)

    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "--model-repository=s3://models/triton" in container["args"]
    assert {"name": "grpc", "port": 8001, "targetPort": "grpc"} in service["spec"]["ports"]
    backend = InferenceBackendSpec(managed=spec)
    assert resolve("gpu", "media", backend).url == "gpu-triton.media.svc:8001"


TLS_PULSAR = {
    "namespace": "content",
    "serviceUrl": "pulsar+ssl://pulsar.test:6651",
    "adminUrl": "https://pulsar.test:8443",
    "authSecretRef": {"name": "pulsar-jwt"},
    "tls": {"caSecretRef": {"name": "pulsar-ca", "key": "ca.crt"}},
}


def test_render_stage_mounts_the_brokers_ca_when_workers_connect_over_tls() -> None:
    spec = PipelineSpec.model_validate(raw_spec(pulsar=TLS_PULSAR))
    rendered = render_pipeline(OWNER, spec, {}, DEFAULTS)

    secret, mount = pod_secret_mount(rendered, "pulsar-ca")
    assert secret == {"secretName": "pulsar-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert mount["readOnly"] is True
    pulsar = rendered.configs["embed"].pulsar
    assert str(pulsar.tls_ca_file) == f"{mount['mountPath']}/ca.crt"
    assert str(pulsar.auth_token_file) == "/var/run/secrets/streamvane/pulsar/token"


def test_render_stage_leaves_the_ca_out_of_workers_when_only_the_admin_url_uses_tls() -> None:
    plain_brokers = {**TLS_PULSAR, "serviceUrl": "pulsar://pulsar.test:6650"}
    spec = PipelineSpec.model_validate(raw_spec(pulsar=plain_brokers))
    rendered = render_pipeline(OWNER, spec, {}, DEFAULTS)

    assert rendered.configs["embed"].pulsar.tls_ca_file is None
    deployment = next(o for o in rendered.objects if o["kind"] == "Deployment")
    assert "pulsar-ca" not in [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]]


def keda_spec(**pulsar: Any) -> dict[str, Any]:
    spec = raw_spec()
    spec["pulsar"].update(pulsar)
    spec["stages"][0]["scaling"] = {
        "minReplicas": 0,
        "maxReplicas": 4,
        "targetLagSeconds": 30,
        "scaleDownDelaySeconds": 90,
        "idleSecondsBeforeZero": 200,
        "engine": "KEDA",
    }
    return spec


def test_render_keda_scaled_object_triggers_on_the_stage_subscription_when_engine_is_keda() -> None:
    rendered = objects(keda_spec())
    scaled = rendered["ScaledObject"]["spec"]

    assert "replicas" not in rendered["Deployment"]["spec"]
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "cu-embed",
    }
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"], scaled["cooldownPeriod"]) == (
        0,
        4,
        200,
    )
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 90
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "pulsar"
    assert trigger["metadata"] == {
        "adminURL": "http://127.0.0.1:8080",
        "topic": "persistent://streamvane/content/items",
        "isPartitionedTopic": "false",
        "subscription": "media.cu-embed",
        "msgBacklogThreshold": "150",
        "activationMsgBacklogThreshold": "0",
    }
    assert "TriggerAuthentication" not in rendered


def test_render_keda_authenticates_with_the_pipeline_token_when_pulsar_needs_one() -> None:
    rendered = objects(keda_spec(authSecretRef={"name": "jwt", "key": "token"}))

    (trigger,) = rendered["ScaledObject"]["spec"]["triggers"]
    assert trigger["metadata"]["authModes"] == "bearer"
    assert trigger["authenticationRef"] == {"name": "cu-pulsar"}
    auth = rendered["TriggerAuthentication"]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "bearerToken", "name": "jwt", "key": "token"}
    ]
    assert "streamvane.io/stage" not in auth["metadata"]["labels"]


def effectively_once_spec() -> dict[str, Any]:
    spec = raw_spec()
    spec["stages"][0] |= {
        "input": {"topic": "items", "subscriptionType": "Failover"},
        "delivery": {"guarantee": "EffectivelyOnce"},
        "scaling": {"minReplicas": 1, "maxReplicas": 1},
    }
    return spec


def test_render_stage_runs_failover_with_the_guarantee_when_stage_is_effectively_once() -> None:
    config = json.loads(objects(effectively_once_spec())["ConfigMap"]["data"]["worker.json"])

    assert config["input"]["subscriptionType"] == "Failover"
    assert config["delivery"]["guarantee"] == "EffectivelyOnce"
    plain = json.loads(objects(raw_spec())["ConfigMap"]["data"]["worker.json"])
    assert plain["delivery"]["guarantee"] == "AtLeastOnce"


def test_render_stage_replaces_the_old_pod_first_when_stage_is_effectively_once() -> None:
    assert objects(effectively_once_spec())["Deployment"]["spec"]["strategy"] == {
        "type": "Recreate"
    }
    assert objects(raw_spec())["Deployment"]["spec"]["strategy"]["type"] == "RollingUpdate"


def test_topology_deduplicates_only_outputs_of_effectively_once_stages_when_rendered() -> None:
    spec = effectively_once_spec()
    spec["stages"].append(
        {"name": "relay", "type": "passthrough", "input": {"topic": "embedded"}, "outputs": ["out"]}
    )
    topo = topology("media", "cu", PipelineSpec.model_validate(spec))

    assert topo.deduplicated == frozenset({"embedded"})


def test_topology_subscribes_a_join_to_its_engagements_and_creates_its_late_topic() -> None:
    spec = PipelineSpec.model_validate(
        {
            "pulsar": {"namespace": "recs"},
            "stages": [
                {
                    "name": "join",
                    "type": "training-examples",
                    "input": {"topic": "recommendations", "subscriptionType": "Key_Shared"},
                    "outputs": ["training-examples"],
                    "params": {"engagementsTopic": "engagements"},
                }
            ],
        }
    )

    topo = topology("media", "recs", spec)

    assert [(t.name, t.partitions, t.state) for t in topo.topics] == [
        ("recommendations", 0, False),
        ("engagements", 0, False),
        ("training-examples", 0, False),
        ("recs-join-dlq", 0, False),
        ("recs-join-dlq-attempts", 0, False),
        ("recs-join-late", 0, False),
        ("recs-join-state", 0, True),
    ]
    assert [(s.topic, s.name) for s in topo.all_subscriptions] == [
        ("recommendations", "media.recs-join"),
        ("engagements", "media.recs-join"),
    ]
    assert "recs-join-late" in topo.produced
    assert topo.stage_subscriptions == {
        "join": "persistent://streamvane/recs/recommendations#media.recs-join"
    }


def test_render_managed_runs_triton_in_explicit_model_control_when_asked() -> None:
    owner = Owner("streamvane.io/v1alpha1", "InferenceBackend", "gpu", "media", "uid-2")
    repository = ModelRepository(uri="/models/triton", persistent_volume_claim="models")

    def args(**fields: Any) -> list[str]:
        spec = ManagedSpec(model_repository=repository, **fields)
        deployment, _ = render_managed(owner, spec)
        return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])

    assert "--model-control-mode=explicit" not in args()
    assert args(model_control="explicit")[-2:] == [
        "--model-control-mode=explicit",
        "--load-model=*",
    ]


def trainer_spec(backend: str = "triton-gpu") -> dict[str, Any]:
    """A ranking stage and its trainer, both on ``backend``."""
    model = {"backend": backend, "name": "recs-ranker"}
    return raw_spec(
        stages=[
            {
                "name": "rank",
                "type": "ranking",
                "input": {"topic": "candidates"},
                "outputs": ["recommendations"],
                "model": model,
                "params": {
                    "catalogueTopic": "persistent://t/content/enriched",
                    "modelVersionsTopic": "model-versions",
                },
            },
            {
                "name": "train",
                "type": "online-training",
                "input": {"topic": "examples", "subscriptionType": "Failover"},
                "outputs": ["model-versions"],
                "model": model,
                "params": {"modelRepository": "/models/triton"},
            },
        ]
    )


MANAGED_WITH_CLAIM = InferenceBackendSpec.model_validate(
    {
        "managed": {
            "modelRepository": {"uri": "/models/triton", "persistentVolumeClaim": "triton-models"},
            "modelControl": "explicit",
        }
    }
)


def test_render_mounts_the_managed_backends_model_volume_read_write_in_its_trainer_only() -> None:
    spec = PipelineSpec.model_validate(trainer_spec())
    rendered = render_pipeline(OWNER, spec, {"triton-gpu": MANAGED_WITH_CLAIM}, DEFAULTS)

    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in rendered.objects
        if d["kind"] == "Deployment"
    }
    trainer, ranker = pods["cu-train"], pods["cu-rank"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "triton-models"}} in trainer[
        "volumes"
    ]
    (mount,) = [m for m in trainer["containers"][0]["volumeMounts"] if m["name"] == "models"]
    assert mount == {"name": "models", "mountPath": "/models"}, "read-write"
    assert "models" not in [v["name"] for v in ranker["volumes"]]
