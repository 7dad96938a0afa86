"""Errors of the validation gate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_deploy.errors import EdgeDeployError

if TYPE_CHECKING:
    from pathlib import Path

    from edge_deploy.validation.report import ValidationReport


class ValidationError(EdgeDeployError):
    """The gate could not run: a missing ONNX file, an unreadable report, bad settings."""


class ValidationFailed(EdgeDeployError):
    """The model ran through the gate and failed it; the report was still written.

    The message names the failing check and, for parity, the output and the size of the difference.
    """

    def __init__(self, message: str, report: ValidationReport, report_path: Path | None = None):
        super().__init__(message)
        self.report = report
        self.report_path = report_path
