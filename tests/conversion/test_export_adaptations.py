"""What the conversion changes around MMDeploy's export (edge_deploy.conversion.environment), each
against the behaviour it restores:

- PyTorch still runs a model after an export in the same process (a local workflow run converts,
  then validates and computes the photo reference, all in one Python process). MMDeploy's function
  rewriter set a rewritten static method back as a plain function on leaving any of its contexts
  (the export's, the gate's reference forward), so Swin's `ShiftWindowMSA.get_attn_mask` got
  `self` first and every later PyTorch inference failed.
- RTMDet-Ins's exported NMS sees boxes clipped to the input, as mmdet's does; MMDeploy's rewrite
  left them unclipped, so the export kept other boxes than PyTorch at the photo's edge.
- A static export's adaptive average pooling averages the bins PyTorch does; MMDeploy's rewrite
  (avg_pool2d with kernel = size // bins) is exact only where the size divides evenly.
"""

import inspect

import numpy as np
import pytest

from edge_deploy.acceptance.photos import builtin_photos
from edge_deploy.acceptance.reference import reference_answers
from edge_deploy.conversion import convert, load_model_dir
from edge_deploy.conversion.environment import mmdeploy_environment
from edge_deploy.conversion.openmmlab import load_configs
from edge_deploy.samples import write_shipped_config

SWIN = "mmpretrain:swin_transformer/swin-tiny_16xb64_in1k.py"


@pytest.mark.slow
def test_a_swin_classifier_answers_in_pytorch_after_its_export(tmp_path):
    model_dir = load_model_dir(write_shipped_config(SWIN, tmp_path / "model"))
    deploy_cfg, _ = load_configs(model_dir)
    enter_a_rewriter_context(deploy_cfg)  # as the gate's reference forward does, before or after
    convert(model_dir, tmp_path / "onnx")
    enter_a_rewriter_context(deploy_cfg)

    from mmpretrain.models.utils import ShiftWindowMSA

    assert isinstance(inspect.getattr_static(ShiftWindowMSA, "get_attn_mask"), staticmethod)
    photo = builtin_photos()[0]
    reference = reference_answers("classification", model_dir.config_path, model_dir.checkpoint_path, [photo])
    classes = reference.answers[0].answer["classes"]
    assert len(classes) == 6 and all(0 <= entry["label"] < 1000 for entry in classes)


def enter_a_rewriter_context(deploy_cfg) -> None:
    with mmdeploy_environment():
        from mmdeploy.codebase import import_codebase
        from mmdeploy.core import RewriterContext
        from mmdeploy.utils import get_codebase

        import_codebase(get_codebase(deploy_cfg))
        with RewriterContext(cfg=deploy_cfg, backend="onnxruntime", opset=11):
            pass


@pytest.mark.slow
def test_rtmdet_ins_boxes_are_clipped_to_the_input_before_nms(task_sample):
    from skimage import data

    from edge_deploy.runtime.config import RuntimeConfig
    from edge_deploy.runtime.dataplane import DataPlane
    from edge_deploy.runtime.model import load_model

    sample = task_sample("rtmdet-ins-tiny")  # heads of a trained model's scale: boxes reach past the edge
    config = RuntimeConfig.from_env({"EDGE_MODEL_DIR": str(sample.onnx_dir)})
    plane = DataPlane.open(config, load_model(config))
    for name in ("astronaut", "coffee", "rocket"):
        prepared = plane.serving.preprocess(np.ascontiguousarray(getattr(data, name)()[..., ::-1]))
        dets = plane.model.run({plane.serving.input_name: prepared.tensor})["dets"][0]
        height, width = prepared.tensor.shape[2:]
        boxes = dets[dets[:, 4] > 0, :4]
        assert len(boxes) > 0, name
        # unclipped, this sample's boxes reached from -33 to 321 in a 320x320 input
        assert boxes.min() >= 0 and boxes[:, 0::2].max() <= width and boxes[:, 1::2].max() <= height, name


@pytest.mark.parametrize("size", [(128, 171), (13, 17), (5, 7), (12, 24)])
def test_a_static_export_pools_adaptively_as_pytorch_does(tmp_path, size):
    import onnxruntime
    import torch
    from mmengine.config import Config

    class PyramidPooling(torch.nn.Module):  # PSPNet's pooling module: bins of 1, 2, 3 and 6
        def forward(self, x):
            return torch.cat([torch.nn.functional.adaptive_avg_pool2d(x, bins).flatten(2) for bins in (1, 2, 3, 6)], 2)

    deploy_cfg = Config(
        dict(
            onnx_config=dict(type="onnx", input_names=["input"], output_names=["output"], input_shape=size[::-1]),
            codebase_config=dict(type="mmseg", task="Segmentation"),
            backend_config=dict(type="onnxruntime"),
        )
    )
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 4, *size)).astype(np.float32))
    with mmdeploy_environment():
        from mmdeploy.core import RewriterContext

        with RewriterContext(cfg=deploy_cfg, backend="onnxruntime", opset=11), torch.no_grad():
            torch.onnx.export(PyramidPooling(), x, str(tmp_path / "pool.onnx"), input_names=["input"], opset_version=11)
    session = onnxruntime.InferenceSession(str(tmp_path / "pool.onnx"), providers=["CPUExecutionProvider"])
    (exported,) = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(exported, PyramidPooling()(x).numpy(), rtol=1e-5, atol=1e-6)
