"""Small ONNX models made with onnx.helper (the conversion stage's real outputs are not needed here).

`conv_model`: images [batch, 3, 8, 8] float32 -> Conv 3x3 + Relu -> features [batch, 4, 8, 8],
and the spatial mean of that -> scores [batch, 4]. The batch axis is dynamic, as in MMDeploy exports.
The weights are random but seeded, so their bytes are distinctive enough to search image layers for.
`wide_model`: large initializers of several kinds, for the runtime's weights-in-place loading.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_deploy.crypto import Keyring, encrypt_file

INPUT_NAME = "images"
INPUT_SHAPE = (3, 8, 8)


@dataclass(frozen=True)
class SealedTestModel:
    plaintext_path: Path  # kept outside the model directory, for ORT on the host and for layer scans
    model_dir: Path  # model.onnx.enc + model.json, what the runtime reads
    model_sha256: str
    key_id: str
    weights: bytes = field(repr=False)  # raw initializer bytes: a layer holding them holds the plaintext model


def conv_model(seed: int = 7) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["images", "weight", "bias"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["conv"], ["features"], name="relu"),
        helper.make_node("ReduceMean", ["features"], ["scores"], axes=[2, 3], keepdims=0, name="mean"),
    ]
    graph = helper.make_graph(
        nodes,
        "edge-test-conv",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *INPUT_SHAPE])],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4, 8, 8]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4]),
        ],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edge-deploy-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def wide_model(seed: int = 8) -> onnx.ModelProto:
    """vector [batch, 256] float32 -> three outputs through large initializers of several kinds, the
    way exports hold them: float32 and float16 `raw_data` (256 KiB, 128 KiB), int64 `raw_data`
    indices (128 KiB), and one float32 matrix in `float_data` (128 KiB, as onnx.helper writes it)."""
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((256, 256)).astype(np.float32)
    half = rng.standard_normal((256, 256)).astype(np.float16)
    indices = rng.integers(0, 256, 16384).astype(np.int64)
    typed = rng.standard_normal((256, 128)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["vector", "dense"], ["hidden"]),
        helper.make_node("Cast", ["half"], ["half_as_float"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["hidden", "half_as_float"], ["mixed"]),
        helper.make_node("Gather", ["mixed", "indices"], ["gathered"], axis=1),
        helper.make_node("MatMul", ["hidden", "typed"], ["projected"]),
    ]
    initializers = [
        numpy_helper.from_array(dense, "dense"),
        numpy_helper.from_array(half, "half"),
        numpy_helper.from_array(indices, "indices"),
        helper.make_tensor("typed", TensorProto.FLOAT, typed.shape, typed.ravel().tolist(), raw=False),
    ]
    graph = helper.make_graph(
        nodes,
        "edge-test-wide",
        [helper.make_tensor_value_info("vector", TensorProto.FLOAT, ["batch", 256])],
        [
            helper.make_tensor_value_info("mixed", TensorProto.FLOAT, ["batch", 256]),
            helper.make_tensor_value_info("gathered", TensorProto.FLOAT, ["batch", 16384]),
            helper.make_tensor_value_info("projected", TensorProto.FLOAT, ["batch", 128]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edge-deploy-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_sealed_model(
    work_dir: Path,
    keyring: Keyring,
    key_id: str,
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
    model: onnx.ModelProto | None = None,
) -> SealedTestModel:
    model = model or conv_model()
    plaintext = work_dir / "plain" / "model.onnx"
    plaintext.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(plaintext))
    model_dir = work_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    sealed = encrypt_file(plaintext, model_dir / "model.onnx.enc", keyring, key_id, checksums=True)
    metadata = {
        "name": "edge-test-conv",
        "model_sha256": sealed.plaintext_sha256,
        "key_id": key_id,
        "execution_providers": list(providers),
        "platform": "linux/amd64",
    }
    (model_dir / "model.json").write_text(json.dumps(metadata))
    assert hashlib.sha256(plaintext.read_bytes()).hexdigest() == sealed.plaintext_sha256
    weights = b"".join(init.raw_data for init in model.graph.initializer)
    return SealedTestModel(plaintext, model_dir, sealed.plaintext_sha256, key_id, weights)
