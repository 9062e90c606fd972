"""The local (python backend) and production (onnxruntime on GPU) configs must serve the same
model interface, so a worker tested locally talks to production unchanged."""

from __future__ import annotations

from google.protobuf import text_format
from models.build import MODEL_NAME
from models.graph import ATTENTION_MASK, EMBEDDING, INPUT_IDS
from models.repository import TEMPLATES
from tritonclient.grpc import model_config_pb2 as mc


def _load(kind: str) -> mc.ModelConfig:
    text = (TEMPLATES / kind / MODEL_NAME / "config.pbtxt").read_text()
    return text_format.Parse(text, mc.ModelConfig())


def _interface(config: mc.ModelConfig) -> tuple[object, ...]:
    def tensors(
        items: list[mc.ModelInput] | list[mc.ModelOutput],
    ) -> list[tuple[str, int, list[int]]]:
        return [(t.name, t.data_type, list(t.dims)) for t in items]

    return (config.name, config.max_batch_size, tensors(config.input), tensors(config.output))


def test_configs_declare_same_interface_when_parsed() -> None:
    assert _interface(_load("cpu")) == _interface(_load("gpu"))


def test_configs_match_onnx_graph_when_parsed() -> None:
    name, max_batch, inputs, outputs = _interface(_load("gpu"))
    assert name == MODEL_NAME
    assert max_batch == 64
    assert inputs == [(INPUT_IDS, mc.TYPE_INT64, [-1]), (ATTENTION_MASK, mc.TYPE_INT64, [-1])]
    assert outputs == [(EMBEDDING, mc.TYPE_FP32, [384])]


def test_cpu_config_batches_ragged_requests_when_served_by_python_backend() -> None:
    config = _load("cpu")
    assert config.backend == "python"
    assert all(i.allow_ragged_batch for i in config.input)
    assert config.HasField("dynamic_batching")
    assert int(config.parameters["intra_op_thread_count"].string_value) >= 1


def test_gpu_config_uses_tensorrt_fp16_when_parsed() -> None:
    config = _load("gpu")
    assert config.backend == "onnxruntime"
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (mc.ModelInstanceGroup.KIND_GPU, 1)
    ]
    assert list(config.dynamic_batching.preferred_batch_size) == [16, 32, 64]
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"


def test_configs_reject_requests_their_client_gave_up_on_when_queued_too_long() -> None:
    for kind in ("cpu", "gpu"):
        policy = _load(kind).dynamic_batching.default_queue_policy
        assert policy.timeout_action == mc.ModelQueuePolicy.REJECT
        assert policy.allow_timeout_override
        assert policy.default_timeout_microseconds > 0
