"""What MMDeploy needs on this stack: exports that fail without the adaptations in environment.py."""

import io

import onnx
import torch
from onnx import helper

from edge_deploy.conversion.environment import mmdeploy_environment


class DeformHead(torch.nn.Module):
    """Calls mmcv's deform_conv2d with plain ints, as TOOD's head does."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(4, 4, 3, 3, generator=torch.Generator().manual_seed(0)))

    def forward(self, x, offset):
        from mmcv.ops import deform_conv2d

        return deform_conv2d(x, offset, self.weight, 1, 1, 1, 1, 1)


def test_deform_conv_called_with_ints_exports_with_paired_attributes():
    with mmdeploy_environment():
        from mmdeploy.core import RewriterContext

        model, exported = DeformHead().eval(), io.BytesIO()
        inputs = (torch.randn(1, 4, 8, 8), torch.zeros(1, 18, 8, 8))
        with RewriterContext(cfg={}, backend="onnxruntime", opset=11):
            torch.onnx.export(model, inputs, exported, opset_version=11)
    (node,) = [node for node in onnx.load_from_string(exported.getvalue()).graph.node if node.domain == "mmdeploy"]
    assert node.op_type == "MMCVDeformConv2d"
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    assert attributes["stride"] == [1, 1] and attributes["dilation"] == [1, 1]
    assert attributes["padding"] == [1, 1, 1, 1]
