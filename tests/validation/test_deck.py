"""The HTML deck: tables and inline SVG plots from the report alone, text escaped."""

import pytest

from edge_deploy.validation.deck import render_html
from edge_deploy.validation.gate import run_gate
from edge_deploy.validation.report import ValidationFailed, ValidationReport, ValidationSettings
from tests.validation.tiny_models import classifier_subject, export_classifier, perturb_initializer

FAST = ValidationSettings(samples=1, warmup_runs=1, timed_runs=5)


def test_a_passing_report_renders_every_section_with_plots(tmp_path):
    path, reference = export_classifier(tmp_path)
    report = run_gate(path, classifier_subject(), lambda: reference, FAST, tmp_path)
    page = render_html(ValidationReport.from_json(report.to_json()))  # from the stored JSON alone
    assert "verdict pass'>PASS" in page
    for heading in ("<h3>Structure</h3>", "<h3>Parity: ONNX Runtime vs PyTorch", "<h3>Speed (ONNX Runtime, CPU)</h3>"):
        assert heading in page
    for check in ("checker", "shape_inference", "io_signature", "opset", "custom_ops", "onnxruntime_load"):
        assert f"<td>{check}</td>" in page
    assert page.count("<table>") >= 6
    assert page.count("<svg") == 2 + (1 if report.optimization and report.optimization.parity else 0)
    cases = len(report.parity.cases)
    assert f"<figcaption>Error distribution of output &#x27;output&#x27; over {cases} cases</figcaption>" in page
    assert "<figcaption>ONNX Runtime latency per run</figcaption>" in page
    assert "log10 |onnx - pytorch|" in page  # axis labels are SVG text
    assert "top-1/top-5 agreement" in page
    assert f"{report.speed.p50_ms:.2f}" in page


def test_a_failing_report_shows_the_failure_escaped(tmp_path):
    path, reference = export_classifier(tmp_path / "good")
    tampered = tmp_path / "bad" / "end2end.onnx"
    perturb_initializer(path, tampered, name="5.weight")
    with pytest.raises(ValidationFailed) as caught:
        run_gate(tampered, classifier_subject(), lambda: reference, FAST, tampered.parent)
    page = (tampered.parent / "validation.html").read_text()
    assert "verdict fail'>FAIL" in page
    assert "output &#x27;output&#x27; max abs error" in page and "&gt; atol 1e-05" in page
    assert str(caught.value) not in page  # raw quotes and '>' never reach the HTML unescaped
    assert "<span class='fail'>FAIL</span>" in page  # the failing output's row
