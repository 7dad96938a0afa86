"""The gate on the real sample families, converted once per session (tests/fixtures/models.py)."""

import json
import shutil

import pytest
from click.testing import CliRunner

from edge_deploy.cli import cli
from edge_deploy.conversion import load_model_dir
from edge_deploy.validation.gate import validate
from edge_deploy.validation.report import ValidationFailed, ValidationReport, ValidationSettings
from tests.validation.tiny_models import perturb_initializer

pytestmark = pytest.mark.slow

QUICK = ValidationSettings(samples=2, warmup_runs=2, timed_runs=10)
NO_SPEED = ValidationSettings(samples=1, warmup_runs=0, timed_runs=1, optimize=False)


@pytest.mark.parametrize("name", ["resnet18", "rtmdet-tiny", "rtmdet-ins-tiny", "fast-scnn"])
def test_each_sample_family_converts_and_passes_the_gate(converted_sample, name, tmp_path):
    sample = converted_sample(name)
    report = validate(sample.model_dir, sample.out_dir, out_dir=tmp_path, settings=QUICK)

    assert report.passed, report.failure
    checks = {check.name: check for check in report.structure.checks}
    assert checks["conversion_record"].detail.startswith(f"sha256 {sample.result.sha256[:16]}")
    assert all(check.passed for check in checks.values())
    assert report.model.onnx_sha256 == sample.result.sha256
    for case in report.parity.cases:
        assert case.passed and case.task is not None and case.task.passed
    assert report.speed.p50_ms > 0 and report.speed.model_bytes == sample.result.size_bytes
    assert report.optimization is not None and report.optimization.speed is not None  # both latencies
    assert ValidationReport.read(tmp_path / "validation.json") == report
    # the page shows each of the gate's photos with PyTorch's answer drawn on it
    page = (tmp_path / "validation.html").read_text()
    assert report.photos.photos and report.photos.unavailable is None
    for photo in report.photos.photos:
        assert f'alt="{photo}: {photo}" src="data:image/png;base64,' in page


def test_detection_compares_the_rewritten_forward_detection_by_detection(converted_sample, task_sample, tmp_path):
    # the shipped sample: score threshold 0, so random weights still detect, many of them tied
    sample = converted_sample("rtmdet-tiny")
    report = validate(sample.model_dir, sample.out_dir, out_dir=tmp_path / "shipped", settings=NO_SPEED)
    (case,) = report.parity.cases
    assert [output.name for output in case.outputs] == ["dets (boxes)", "dets (scores)", "labels"]
    metrics = case.task.metrics
    assert metrics["reference_detections"] == 300  # the test_cfg's max_per_img, kept by the export too
    assert metrics["matched"] + metrics["excused_ties"] == metrics["reference_detections"]
    # heads of a trained model's scale give distinct scores: every detection is matched, none excused
    decisive = task_sample("rtmdet-tiny")
    report = validate(
        load_model_dir(decisive.source), decisive.onnx_dir, out_dir=tmp_path / "decisive", settings=NO_SPEED
    )
    metrics = report.parity.cases[0].task.metrics
    assert metrics["matched"] == metrics["reference_detections"] == 300 and metrics["excused_ties"] == 0


def test_ssdlite_at_a_zero_threshold_passes_as_a_set_with_its_cut_off_ties_excused(converted_sample, tmp_path):
    # All 200 boxes of max_per_img are kept; near the cut-off, scores 1e-4 apart swap order between
    # PyTorch and ONNX Runtime, so an index-by-index comparison would fail a model that is right.
    sample = converted_sample("ssdlite-mobilenetv2")
    report = validate(sample.model_dir, sample.out_dir, out_dir=tmp_path, settings=NO_SPEED)

    assert report.passed, report.failure
    metrics = report.parity.cases[0].task.metrics
    assert metrics["reference_detections"] == 200
    assert metrics["excused_ties"] > 0 and metrics["matched"] + metrics["excused_ties"] == 200
    assert "excused as swaps between tied scores" in report.parity.cases[0].task.detail


def test_instance_masks_are_compared_by_iou_per_matched_detection(converted_sample, tmp_path):
    sample = converted_sample("rtmdet-ins-tiny")
    report = validate(sample.model_dir, sample.out_dir, out_dir=tmp_path, settings=NO_SPEED)
    (case,) = report.parity.cases
    masks = next(output for output in case.outputs if output.name.startswith("masks"))
    assert masks.passed and masks.atol == pytest.approx(0.02)  # IoU >= 0.98
    assert masks.elements == case.task.metrics["matched"] > 0  # one IoU per matched detection


def test_a_tampered_mask_head_fails_on_the_masks(converted_sample, tmp_path):
    sample = converted_sample("rtmdet-ins-tiny")
    tampered = tmp_path / "onnx"
    shutil.copytree(sample.out_dir, tampered)
    perturb_initializer(sample.onnx_path, tampered / "end2end.onnx", name="bbox_head.rtm_kernel.0.bias", scale=5.0)
    with pytest.raises(ValidationFailed, match=r"parity: output 'masks \(1 - IoU at 0\.5\)' max abs error"):
        validate(sample.model_dir, tampered, settings=NO_SPEED)


def test_segmentation_checks_pixel_argmax_agreement(converted_sample, tmp_path):
    sample = converted_sample("fast-scnn")
    report = validate(sample.model_dir, sample.out_dir, out_dir=tmp_path, settings=NO_SPEED)
    (case,) = report.parity.cases
    assert case.task.kind == "pixel argmax agreement"
    assert case.task.metrics["pixels"] == 256 * 512 and case.task.metrics["pixel_agreement"] == 1.0


def test_dynamic_batch_classification_validates_at_two_batch_sizes(converted_sample, tmp_path):
    sample = converted_sample("resnet18")
    assert sample.result.inputs["input"][0] == "batch"
    report = validate(sample.model_dir, sample.out_dir, out_dir=tmp_path, settings=NO_SPEED)
    by_batch = {case.inputs["input"][0]: case for case in report.parity.cases}
    assert sorted(by_batch) == [1, 2]
    assert all(case.passed for case in by_batch.values())
    assert by_batch[2].task.metrics["images"] == 2 and by_batch[2].task.metrics["top1_agreement"] == 1.0


@pytest.mark.parametrize(
    ("name", "initializer", "output"),
    [
        ("resnet18", "head.fc.weight", "output"),
        ("rtmdet-tiny", "bbox_head.rtm_reg.0.weight", "dets (boxes)"),
        # the set comparison that excuses SSDLite's ties (below) still catches a changed box regressor
        ("ssdlite-mobilenetv2", "bbox_head.reg_convs.1.1.weight", "dets (boxes)"),
    ],
)
def test_a_tampered_initializer_fails_naming_the_output_and_the_difference(
    converted_sample, name, initializer, output, tmp_path
):
    sample = converted_sample(name)
    tampered = tmp_path / "onnx"
    shutil.copytree(sample.out_dir, tampered)
    perturb_initializer(sample.onnx_path, tampered / "end2end.onnx", name=initializer, scale=1.0)

    with pytest.raises(ValidationFailed) as caught:
        validate(sample.model_dir, tampered, settings=NO_SPEED)

    message = str(caught.value)
    assert f"parity: output '{output}' max abs error" in message
    assert "conversion_record: end2end.onnx changed after conversion" in message
    report = ValidationReport.read(tampered / "validation.json")
    assert not report.passed and report.failure == message
    worst = report.parity.worst(output)
    assert not worst.passed and f"max abs error {worst.max_abs:.1e}" in message
    assert worst.violations > 0 and worst.max_abs > worst.allowed_at_worst


def test_cli_validates_and_prints_the_report(converted_sample, tmp_path):
    sample = converted_sample("fast-scnn")
    args = ["validate", str(sample.model_dir.root), str(sample.out_dir), "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "--samples", "1", "--runs", "3", "--no-optimize", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True and report["model"]["task"] == "segmentation"

    text = CliRunner().invoke(cli, [*args, "--samples", "1", "--runs", "3", "--no-optimize"])
    assert text.exit_code == 0 and text.stdout.startswith("PASS end2end.onnx (segmentation")
    assert "pixel argmax agreement: 131072 of 131072 pixels agree" in text.stdout


def test_cli_failure_exits_with_the_gate_code_and_one_line_naming_the_output(converted_sample, tmp_path):
    sample = converted_sample("resnet18")
    tampered = tmp_path / "onnx"
    shutil.copytree(sample.out_dir, tampered)
    perturb_initializer(sample.onnx_path, tampered / "end2end.onnx", name="head.fc.weight", scale=1.0)
    args = ["validate", str(sample.model_dir.root), str(tampered), "--samples", "1", "--runs", "1", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 6  # a failed gate (docs/user-guide.md: exit codes)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: end2end.onnx failed validation: parity: output 'output' max abs error")
    assert json.loads(result.stdout)["passed"] is False  # --json still prints the report
