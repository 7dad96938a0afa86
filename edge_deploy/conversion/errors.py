"""The errors of a conversion: the model directory is wrong, or a conversion step failed."""

from __future__ import annotations

from edge_deploy.errors import EdgeDeployError


class ModelDirError(EdgeDeployError):
    """The model directory or its manifest is incomplete or wrong; the message names each field."""


class ConversionError(EdgeDeployError):
    """A conversion step failed; the message names the stage and the root exception."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage} failed: {message}")
        self.stage = stage


def describe(exc: BaseException) -> str:
    """`Type: message` of the innermost cause, the part MMDeploy's own messages hide."""
    root = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    text = str(root).strip() or repr(root)
    return f"{type(root).__name__}: {text}"


# Export failures whose cause is a gap in MMDeploy 1.3.1's ONNX Runtime support, not the model
# directory: the message says so, since no manifest field can fix them.
KNOWN_EXPORT_GAPS = {
    "translating DeformConv2dFunction": (
        "the model uses mmcv's DeformConv2d (VFNet, TOOD), which MMDeploy 1.3.1 cannot give ONNX Runtime: "
        "its ops library implements only the modulated variant (ModulatedDeformConv2d, DCNv2). No manifest "
        "field fixes this; the layer must change"
    ),
}


def describe_export_failure(exc: BaseException) -> str:
    """`describe(exc)`, followed by the known gap that explains it, if one does."""
    message = describe(exc)
    gaps = [gap for marker, gap in KNOWN_EXPORT_GAPS.items() if marker in message]
    return f"{message} ({gaps[0]})" if gaps else message
