"""The gate end to end on a small exported classifier: pass, tamper, wrong signature, optimization."""

import json

import pytest

from edge_deploy.validation.errors import ValidationError
from edge_deploy.validation.gate import DECK_NAME, REPORT_NAME, run_gate
from edge_deploy.validation.optimize import OPTIMIZED_NAME, speed_and_optimization
from edge_deploy.validation.parity import TASK_DEFAULTS, input_cases, run_reference
from edge_deploy.validation.report import ValidationFailed, ValidationReport, ValidationSettings
from tests.validation.tiny_models import (
    classifier_subject,
    export_classifier,
    perturb_initializer,
    tiny_classifier,
)

FAST = ValidationSettings(samples=2, warmup_runs=1, timed_runs=5)


def test_a_dynamic_batch_model_passes_at_two_batch_sizes(tmp_path):
    path, reference = export_classifier(tmp_path)
    report = run_gate(path, classifier_subject(), lambda: reference, FAST, tmp_path)
    assert report.passed and report.failure is None
    batches = sorted({case.inputs["input"][0] for case in report.parity.cases})
    assert batches == [1, 2]
    assert len(report.parity.cases) == 3  # 2 samples at the manifest's size, 1 at the other
    for case in report.parity.cases:
        assert case.task.passed and case.task.metrics["top1_agreement"] == 1.0
        assert case.outputs[0].max_abs < 1e-6
    assert report.speed.p50_ms > 0 and report.speed.model_bytes == path.stat().st_size
    assert ValidationReport.read(tmp_path / REPORT_NAME) == report
    assert "<svg" in (tmp_path / DECK_NAME).read_text()


def test_a_tampered_initializer_fails_naming_the_output_and_the_difference(tmp_path):
    path, reference = export_classifier(tmp_path / "good")
    tampered = tmp_path / "tampered" / "end2end.onnx"
    perturb_initializer(path, tampered, name="5.weight")  # the final Linear layer's weights
    with pytest.raises(ValidationFailed) as caught:
        run_gate(tampered, classifier_subject(), lambda: reference, FAST, tampered.parent)
    message = str(caught.value)
    assert "output 'output' max abs error" in message
    assert "> atol 1e-05 + rtol 1e-03*|ref|" in message
    assert "set `tolerances` in manifest.yaml" in message  # what the user can change
    report = ValidationReport.read(tampered.parent / REPORT_NAME)  # written although the gate failed
    assert not report.passed and report.failure == message
    worst = report.parity.worst("output")
    assert not worst.passed and worst.max_abs > 1e-4 and f"{worst.max_abs:.1e}" in message
    assert report.optimization is None  # a failing model is not optimized
    assert caught.value.report == report


def test_a_loosened_gate_says_so_in_its_report_and_page(tmp_path):
    path, reference = export_classifier(tmp_path)
    loose = ValidationSettings(samples=1, warmup_runs=1, timed_runs=3, atol=0.1, min_speedup=1.0)
    report = run_gate(path, classifier_subject(), lambda: reference, loose, tmp_path)
    assert report.passed
    assert [item.split("=")[0] for item in report.loosened] == ["validation.atol", "validation.min_speedup"]
    assert ValidationReport.read(tmp_path / REPORT_NAME).loosened == report.loosened
    assert "Loosened by request: validation.atol=0.1" in (tmp_path / DECK_NAME).read_text()
    strict = run_gate(path, classifier_subject(), lambda: reference, FAST, tmp_path / "strict")
    assert strict.loosened == []


def test_a_model_changed_after_conversion_is_caught_by_its_record(tmp_path):
    path, reference = export_classifier(tmp_path)
    subject = classifier_subject(expected_onnx_sha256="0" * 64)
    with pytest.raises(ValidationFailed, match=r"conversion_record: end2end\.onnx changed after conversion"):
        run_gate(path, subject, lambda: reference, FAST, tmp_path)


def test_a_signature_mismatch_stops_before_parity_with_a_clear_message(tmp_path):
    path, _ = export_classifier(tmp_path)
    subject = classifier_subject(dynamic_batch=False, opset=13)

    def no_reference():
        raise AssertionError("parity must not run when the inputs are not the declared ones")

    with pytest.raises(ValidationFailed) as caught:
        run_gate(path, subject, no_reference, FAST, tmp_path)
    message = str(caught.value)
    assert "io_signature: input 'input' axis 0 is 'batch' in the ONNX model, the manifest expects 1" in message
    assert "opset: model has ONNX opset 11, the manifest declares 13" in message
    assert "parity not run" in message
    report = json.loads((tmp_path / REPORT_NAME).read_text())
    assert report["parity"] is None and report["passed"] is False


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ValidationError, match=r"no ONNX model at end2end\.onnx"):
        run_gate(tmp_path / "end2end.onnx", classifier_subject(), lambda: None, FAST, tmp_path)


def test_an_optimized_model_is_kept_only_when_it_is_faster(tmp_path):
    path, reference = export_classifier(tmp_path)
    runs = run_reference(reference, input_cases(classifier_subject().signature.inputs, FAST))
    demanding = ValidationSettings(samples=2, warmup_runs=1, timed_runs=5, min_speedup=10.0)  # the bound
    tolerances = TASK_DEFAULTS["classification"]
    raw, result = speed_and_optimization(path, tmp_path, runs, "classification", tolerances, demanding)
    assert not result.kept and "below the 10.00x needed" in result.reason
    assert result.parity.passed and result.speed.p50_ms > 0 and raw.p50_ms > 0  # both latencies are reported
    assert len(result.speed.latencies_ms) == len(raw.latencies_ms) == 5
    assert result.speedup == raw.p50_ms / result.speed.p50_ms
    assert not (tmp_path / OPTIMIZED_NAME).exists()


def test_an_optimized_model_that_fails_parity_is_dropped(tmp_path):
    path, _ = export_classifier(tmp_path)
    other = tiny_classifier(seed=1)  # a different model as the reference: parity cannot pass

    def reference(feeds):
        import torch

        with torch.no_grad():
            return {"output": other(torch.from_numpy(feeds["input"])).numpy()}

    runs = run_reference(reference, input_cases(classifier_subject().signature.inputs, FAST))
    lenient = ValidationSettings(samples=2, warmup_runs=1, timed_runs=5, min_speedup=1.0)
    _, result = speed_and_optimization(path, tmp_path, runs, "classification", TASK_DEFAULTS["classification"], lenient)
    assert not result.kept and result.speed is None  # not timed: it is out before speed matters
    assert result.reason.startswith("dropped: the optimized model fails parity (output 'output' max abs error")
    assert not (tmp_path / OPTIMIZED_NAME).exists()


def test_the_report_names_the_file_that_ships(tmp_path):
    # Whether the optimized copy measures faster is up to the machine; either way the report must
    # point at the file that exists and carry that file's hash.
    path, reference = export_classifier(tmp_path)
    settings = ValidationSettings(samples=1, warmup_runs=1, timed_runs=5, min_speedup=1.0)
    report = run_gate(path, classifier_subject(), lambda: reference, settings, tmp_path)
    optimization = report.optimization
    assert optimization is not None and optimization.parity.passed
    if optimization.kept:
        assert report.shipped_onnx == OPTIMIZED_NAME and (tmp_path / OPTIMIZED_NAME).is_file()
        assert report.shipped_sha256 == optimization.sha256 != report.model.onnx_sha256
    else:
        assert report.shipped_onnx == "end2end.onnx" and report.shipped_sha256 == report.model.onnx_sha256
        assert not (tmp_path / OPTIMIZED_NAME).exists()


def test_timing_stops_at_the_time_budget_when_it_comes_before_the_count(tmp_path):
    path, reference = export_classifier(tmp_path)
    budget = 0.3
    settings = ValidationSettings(samples=1, warmup_runs=1, time_budget_s=budget, optimize=False)
    object.__setattr__(settings, "timed_runs", 1_000_000)  # past the bound a request may set: never reached
    report = run_gate(path, classifier_subject(), lambda: reference, settings, tmp_path)
    speed = report.speed
    assert speed.stopped_by == "time budget" and speed.time_budget_s == budget
    assert 1 <= speed.timed_runs < 1_000_000 and len(speed.latencies_ms) == speed.timed_runs
    assert speed.timing_seconds >= budget  # it ran until the budget was spent, not beyond one more round


def test_timing_stops_at_the_count_when_it_comes_first(tmp_path):
    path, reference = export_classifier(tmp_path)
    settings = ValidationSettings(samples=1, warmup_runs=1, timed_runs=4, time_budget_s=300, optimize=False)
    report = run_gate(path, classifier_subject(), lambda: reference, settings, tmp_path)
    assert report.speed.stopped_by == "count" and report.speed.timed_runs == 4
