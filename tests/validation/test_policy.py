"""Which settings weaken a safety check (edge_deploy.policy): the service asks for the `policy` scope
for them, and every run writes them into its report, labels and record."""

from __future__ import annotations

import pytest

from edge_deploy.policy import STRICTEST_ATOL, STRICTEST_RTOL, base_image_allowed, loosened
from edge_deploy.validation.parity import TASK_DEFAULTS
from edge_deploy.validation.report import ValidationSettings

PINNED = "@sha256:" + "c" * 64
ALLOWED = ("myacr.azurecr.io/base", "docker.io/library/")


def test_the_strictest_tolerances_are_the_smallest_task_defaults_scores_included():
    # detection scores (atol 1e-5) and boxes (rtol 1e-4): the values docs/service.md and the 403 name
    assert (STRICTEST_ATOL, STRICTEST_RTOL) == (1e-5, 1e-4)
    for defaults in TASK_DEFAULTS.values():
        assert min(defaults.atol, defaults.score_atol or 1) >= STRICTEST_ATOL
        assert min(defaults.rtol, defaults.score_rtol or 1) >= STRICTEST_RTOL


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (ValidationSettings(), []),
        (ValidationSettings(atol=STRICTEST_ATOL, rtol=STRICTEST_RTOL, min_speedup=2.0), []),  # as strict or more
        (ValidationSettings(atol=1e-3), ["validation.atol"]),
        (ValidationSettings(rtol=0.01, min_speedup=1.0), ["validation.rtol", "validation.min_speedup"]),
    ],
)
def test_only_settings_looser_than_every_default_are_loosening(settings, named):
    assert [item.setting for item in loosened(settings, {}, ALLOWED)] == named


@pytest.mark.parametrize(
    ("reference", "allowed"),
    [
        ("myacr.azurecr.io/base/python" + PINNED, True),
        ("myacr.azurecr.io/base" + PINNED, True),
        ("docker.io/library/python" + PINNED, True),
        ("myacr.azurecr.io/base/python:3.11", False),  # not pinned: a tag can be moved
        ("myacr.azurecr.io/base-evil/python" + PINNED, False),  # a prefix is whole path segments
        ("evil.io/myacr.azurecr.io/base/python" + PINNED, False),
        ("debian:bookworm" + PINNED, False),
    ],
)
def test_a_base_image_is_allowed_pinned_and_under_an_allowed_repository(reference, allowed):
    assert base_image_allowed(reference, ALLOWED) is allowed
    named = [item.setting for item in loosened(ValidationSettings(), {"arm64-cpu": reference}, ALLOWED)]
    assert named == ([] if allowed else ["base_images.arm64-cpu"])


def test_with_no_allow_list_every_override_is_loosening():
    assert not base_image_allowed("myacr.azurecr.io/base/python" + PINNED, ())
