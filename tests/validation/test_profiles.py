"""The gate on the built-in profiles the samples do not use: a dynamic detector, a label-map segmentor."""

import pytest
import yaml

from edge_deploy.conversion import convert, load_model_dir
from edge_deploy.validation.gate import validate
from edge_deploy.validation.report import ValidationSettings

pytestmark = pytest.mark.slow

NO_SPEED = ValidationSettings(samples=1, warmup_runs=0, timed_runs=1, optimize=False)


def _with_builtin_profile(root, profile: str, dynamic_axes: dict[int, str] | None = None):
    """The sample directory switched to a built-in deploy profile (its own deploy_config.py removed)."""
    manifest = yaml.safe_load((root / "manifest.yaml").read_text())
    manifest["deploy_profile"] = profile
    if dynamic_axes is not None:
        manifest["inputs"][0]["dynamic_axes"] = dynamic_axes
    (root / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    (root / "deploy_config.py").unlink()
    return load_model_dir(root)


def test_a_dynamic_detector_validates_at_batch_2_and_a_smaller_size(copy_sample, tmp_path):
    axes = {0: "batch", 2: "height", 3: "width"}
    model_dir = _with_builtin_profile(copy_sample("rtmdet-tiny"), "detection_onnxruntime_dynamic", axes)
    convert(model_dir, tmp_path / "onnx")
    report = validate(model_dir, tmp_path / "onnx", settings=NO_SPEED)
    sizes = [case.inputs["input"] for case in report.parity.cases]
    assert sizes == [[1, 3, 320, 320], [2, 3, 320, 320], [1, 3, 256, 256]]
    for case in report.parity.cases:
        assert case.passed and case.task.metrics["reference_detections"] >= 300 * case.inputs["input"][0]


def test_a_label_map_segmentor_is_judged_by_pixel_agreement(copy_sample, tmp_path):
    model_dir = _with_builtin_profile(copy_sample("fast-scnn"), "segmentation-argmax_onnxruntime_static")
    result = convert(model_dir, tmp_path / "onnx")
    assert result.outputs["output"] == [1, 1, 256, 512]  # with_argmax: class indices, not logits
    report = validate(model_dir, tmp_path / "onnx", settings=NO_SPEED)
    (case,) = report.parity.cases
    assert case.passed and case.outputs[0].dtype == "int64"
    assert "label map: passes with >= 99.900% of pixels equal" in case.outputs[0].note
    assert case.task.metrics["pixel_agreement"] >= 0.999
