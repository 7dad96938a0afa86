"""Why a request is refused: one exception per HTTP status, each with a reason that names what to fix.

The data plane and the codecs raise these; the transport turns them into `{"error": reason}` with
the status. Nothing else a request can cause becomes a 4xx: anything else is a bug (500).
"""

from __future__ import annotations

from edge_deploy.errors import EdgeDeployError

# How /v1/predict refuses a model whose serving.json says it cannot be served (the acceptance stage
# reads it to know that only the tensors can be compared)
PREDICT_OFF = "/v1/predict is off for this model"


class Refused(EdgeDeployError):
    """A request the runtime will not serve; `status` is its HTTP status."""

    status = 400


class BadInput(Refused):
    """The request's content does not fit the model (shape, dtype, values, a corrupt image)."""


class NotFound(Refused):
    status = 404


class TooLarge(Refused):
    """The request (or what it would unpack to) exceeds a stated limit."""

    status = 413


class UnsupportedMediaType(Refused):
    status = 415
