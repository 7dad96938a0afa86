"""Errors of the image stage. None carries a registry password or a key: messages name the user,
the registry host, the image, the platform and the variable to set."""

from __future__ import annotations

from edge_deploy.errors import EdgeDeployError, TransientError


class ImageError(EdgeDeployError):
    """Base class of the image stage's errors."""


class EngineUnavailableError(ImageError):
    """No Docker engine answers where the SDK looked."""


class BaseImageMissingError(ImageError):
    """The base image for a target is neither in the engine nor pullable, or is for another platform."""


class RuntimeLayerError(ImageError):
    """The target platform's runtime wheels cannot be fetched or installed on the build host."""


class OperatorLibraryError(ImageError):
    """The model needs custom operators whose library does not exist for a target's platform."""


class BuildError(ImageError):
    """The engine failed to build an image (nothing of that build is left behind)."""


class RegistryAuthError(ImageError):
    """The registry refused the credentials (or anonymous access)."""


class RegistryError(ImageError):
    """The registry answered a request with an error a retry cannot cure."""


class RegistryUnavailableError(TransientError, ImageError):
    """The registry could not be reached (or kept failing with 5xx) after bounded retries."""
