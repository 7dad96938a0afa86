"""Where tolerances come from, and which input sizes parity tries."""

import pytest

from edge_deploy.conversion import InputSpec, Tolerances
from edge_deploy.validation.errors import ValidationError
from edge_deploy.validation.parity import TASK_DEFAULTS, case_shapes, input_cases, resolve_tolerances
from edge_deploy.validation.report import ValidationSettings


def test_per_task_defaults_apply_without_a_manifest_value():
    tolerances = resolve_tolerances("detection", None, ValidationSettings())
    assert tolerances == TASK_DEFAULTS["detection"]
    detection = tolerances.detection()
    assert (detection.box_atol, detection.score_atol) == (1e-3, 1e-5)


def test_the_manifest_overrides_the_defaults_and_settings_override_the_manifest():
    manifest = Tolerances(atol=1e-2, rtol=1e-2, min_task_agreement=0.95)
    from_manifest = resolve_tolerances("detection", manifest, ValidationSettings())
    assert (from_manifest.atol, from_manifest.rtol, from_manifest.task_agreement) == (1e-2, 1e-2, 0.95)
    assert from_manifest.detection().score_atol == 1e-2  # one explicit rule for the whole output
    from_settings = resolve_tolerances("detection", manifest, ValidationSettings(atol=1e-6))
    assert (from_settings.atol, from_settings.rtol, from_settings.detection().score_atol) == (1e-6, 1e-2, 1e-6)


def test_an_unknown_task_is_named():
    with pytest.raises(ValidationError, match="no parity defaults for task 'pose'"):
        resolve_tolerances("pose", None, ValidationSettings())


def test_dynamic_axes_add_batch_sizes_and_a_scaled_size():
    spec = InputSpec("input", [1, 3, 320, 480], {0: "batch", 2: "height", 3: "width"})
    shapes = case_shapes([spec], ValidationSettings(batch_sizes=[1, 2, 4], spatial_scale=0.75))
    assert [item["input"] for item in shapes] == [
        [1, 3, 320, 480],
        [2, 3, 320, 480],
        [4, 3, 320, 480],
        [1, 3, 256, 352],
    ]
    static = InputSpec("input", [1, 3, 224, 224], {})
    assert case_shapes([static], ValidationSettings()) == [{"input": [1, 3, 224, 224]}]


def test_inputs_are_seeded_and_differ_between_samples():
    spec = InputSpec("input", [1, 3, 8, 8], {0: "batch"})
    first = input_cases([spec], ValidationSettings(samples=2, seed=7))
    again = input_cases([spec], ValidationSettings(samples=2, seed=7))
    assert [case.name for case in first] == [
        "input 1x3x8x8, sample 0",
        "input 1x3x8x8, sample 1",
        "input 2x3x8x8, sample 0",  # one input checks that another batch size runs
    ]
    assert all((a.feeds["input"] == b.feeds["input"]).all() for a, b in zip(first, again, strict=True))
    assert not (first[0].feeds["input"] == first[1].feeds["input"]).all()
    assert first[0].feeds["input"].dtype.name == "float32"
