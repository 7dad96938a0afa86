"""Small ONNX models made with onnx.helper (the conversion stage's real outputs are not needed here).

`conv_model`: images [batch, 3, 8, 8] float32 -> Conv 3x3 + Relu -> features [batch, 4, 8, 8],
and the spatial mean of that -> scores [batch, 4]. The batch axis is dynamic, as in MMDeploy exports.
The weights are random but seeded, so their bytes are distinctive enough to search image layers for.
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


def write_sealed_model(
    work_dir: Path, keyring: Keyring, key_id: str, providers: tuple[str, ...] = ("CPUExecutionProvider",)
) -> SealedTestModel:
    model = conv_model()
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
