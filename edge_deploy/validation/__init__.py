"""The ONNX validation gate: structure, parity against PyTorch, speed, optional optimization.

One module per check (`structure`, `parity`, `speed`, `optimize`), the typed report (`report`),
its HTML rendering for a Flyte Deck (`deck`), and `gate.validate`, which runs them in order and
raises `ValidationFailed` when the model must not ship. Importing this package is cheap: torch,
onnxruntime and the OpenMMLab stack are imported by the modules that need them.
"""

from edge_deploy.validation.errors import ValidationError
from edge_deploy.validation.report import ValidationFailed

__all__ = ["ValidationError", "ValidationFailed"]
