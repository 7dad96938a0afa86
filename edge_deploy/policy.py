"""What a deployment loosens of the safety checks, so that it can need a permission and leave a trace.

Two kinds of knob can weaken what the pipeline proves about an image:

- the gate's tolerances: an explicit `atol`/`rtol` looser than the strictest task default (it
  replaces the defaults for every output, detection scores included), or a `min_speedup` below the
  default (an optimized copy is then kept without being faster);
- a base image override that is not on the allow-list (EDGE_ALLOWED_BASE_IMAGES: repository
  prefixes; an override must start with one and be pinned by digest, `@sha256:...`).

`loosened()` names each such choice. The service asks for the `policy` scope when it finds any;
every run, however started, writes them into its validation report, its image labels and its
deployment record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edge_deploy.validation.report import ValidationSettings
from edge_deploy.validation.tolerances import TASK_DEFAULTS

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _strictest(name: str) -> float:
    """The smallest default tolerance of any task for `name` (atol or rtol), scores' included."""
    values = [getattr(defaults, name) for defaults in TASK_DEFAULTS.values()]
    values += [getattr(defaults, f"score_{name}", None) for defaults in TASK_DEFAULTS.values()]
    return min(value for value in values if value is not None)


STRICTEST_ATOL, STRICTEST_RTOL = _strictest("atol"), _strictest("rtol")
DEFAULT_MIN_SPEEDUP = ValidationSettings().min_speedup


@dataclass(frozen=True)
class Loosening:
    """One setting that weakens a check: where it is set, its value, and what it weakens."""

    setting: str  # as the request names it: validation.atol, base_images.arm64-cpu
    value: str
    why: str

    def __str__(self) -> str:
        return f"{self.setting}={self.value} ({self.why})"


def loosened_validation(settings: ValidationSettings) -> list[Loosening]:
    found = []
    for name, strictest in (("atol", STRICTEST_ATOL), ("rtol", STRICTEST_RTOL)):
        value = getattr(settings, name)
        if value is not None and value > strictest:
            why = f"looser than {strictest:g}, the strictest task default"
            found.append(Loosening(f"validation.{name}", f"{value:g}", why))
    if settings.min_speedup < DEFAULT_MIN_SPEEDUP:
        found.append(
            Loosening(
                "validation.min_speedup",
                f"{settings.min_speedup:g}",
                f"below {DEFAULT_MIN_SPEEDUP:g}: an optimized copy is kept without being faster",
            )
        )
    return found


def loosened_base_images(base_images: Mapping[str, str], allowed: Sequence[str]) -> list[Loosening]:
    return [
        Loosening(f"base_images.{device_class}", reference, "not a digest-pinned image under EDGE_ALLOWED_BASE_IMAGES")
        for device_class, reference in sorted(base_images.items())
        if not base_image_allowed(reference, allowed)
    ]


def loosened(settings: ValidationSettings, base_images: Mapping[str, str], allowed: Sequence[str]) -> list[Loosening]:
    return loosened_validation(settings) + loosened_base_images(base_images, allowed)


def base_image_allowed(reference: str, allowed: Sequence[str]) -> bool:
    """Pinned by digest, and under one of the allowed repository prefixes (whole path segments:
    `acr.example.com/base` allows `acr.example.com/base/python@sha256:...`, not `.../base-evil/...`)."""
    return bool(DIGEST.search(reference)) and any(_under(reference, prefix) for prefix in allowed if prefix)


def _under(reference: str, prefix: str) -> bool:
    if not reference.startswith(prefix):
        return False
    return prefix.endswith("/") or reference[len(prefix) : len(prefix) + 1] in ("/", "@", ":")
