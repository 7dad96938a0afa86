"""The workflow's less common knobs, in one typed input (pass it to pyflyte run as JSON)."""

from dataclasses import dataclass, field

from edge_deploy.validation.report import ValidationSettings


@dataclass
class DeployOptions:
    # The index tag in the registry; default: the first 12 characters of the model's commit id.
    release_tag: str = ""
    # Device class -> base image reference, overriding the platform matrix (e.g. a mirrored base).
    base_images: dict[str, str] = field(default_factory=dict)
    # False skips image builds (no Docker engine); the model is still converted, validated and sealed.
    build_images: bool = True
    validation: ValidationSettings = field(default_factory=ValidationSettings)


DEFAULT_OPTIONS = DeployOptions()
