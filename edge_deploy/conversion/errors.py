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
