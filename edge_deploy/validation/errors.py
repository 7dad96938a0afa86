"""The error a validation step raises when it cannot run. A gate that ran and failed raises
`ValidationFailed`, which carries its report and so lives beside it in `validation.report`."""

from edge_deploy.errors import EdgeDeployError


class ValidationError(EdgeDeployError):
    """The gate could not run: a missing ONNX file, an unreadable report, bad settings."""
