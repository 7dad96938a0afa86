"""The report document: typed, round-trips through JSON, rejects what it cannot read."""

import json

import pytest

from edge_deploy.validation.errors import ValidationError
from edge_deploy.validation.gate import run_gate
from edge_deploy.validation.report import ValidationReport, ValidationSettings
from tests.validation.tiny_models import classifier_subject, export_classifier

FAST = ValidationSettings(samples=2, warmup_runs=1, timed_runs=3)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> ValidationReport:
    out = tmp_path_factory.mktemp("tiny")
    path, reference = export_classifier(out)
    return run_gate(path, classifier_subject(), lambda: reference, FAST, out)


def test_json_round_trip_gives_an_equal_report(report, tmp_path):
    again = ValidationReport.from_json(report.to_json())
    assert again == report
    assert isinstance(again.parity.cases[0].outputs[0].histogram.counts, list)
    path = report.write(tmp_path / "validation.json")
    assert ValidationReport.read(path) == report
    assert not list(tmp_path.glob(".*.tmp"))


def test_non_finite_numbers_survive_as_strings(report):
    data = json.loads(report.to_json())
    data["parity"]["cases"][0]["outputs"][0]["max_abs"] = "inf"  # as reports were written before
    restored = ValidationReport.from_json(json.dumps(data))
    assert restored.parity.cases[0].outputs[0].max_abs == float("inf")
    text = restored.to_json()
    json.loads(text, parse_constant=pytest.fail)  # standard JSON: no Infinity/NaN tokens
    assert ValidationReport.from_json(text) == restored


def test_unreadable_reports_are_rejected_with_the_field_named(report):
    with pytest.raises(ValidationError, match="not JSON"):
        ValidationReport.from_json("{")
    data = json.loads(report.to_json())
    with pytest.raises(ValidationError, match="schema_version 99 is not 1"):
        ValidationReport.from_json(json.dumps(data | {"schema_version": 99}))
    data["speed"]["p50_ms"] = "fast"
    with pytest.raises(ValidationError, match=r"report: speed\.p50_ms must be float, got \"fast\""):
        ValidationReport.from_json(json.dumps(data))


def test_settings_are_checked_against_their_bounds_naming_each():
    with pytest.raises(ValidationError) as caught:
        ValidationSettings(samples=0, batch_sizes=[0], atol=-1.0, min_speedup=0.5, time_budget_s=float("inf"))
    message = str(caught.value)
    for expected in (
        "samples must be in [1, 32], got 0",
        "batch_sizes must be in [1, 64], at most 8 values, got [0]",
        "atol must be in [0, 1], got -1.0",
        "min_speedup must be in [1, 10], got 0.5",
        "time_budget_s must be in (0, 300], got inf",
    ):
        assert expected in message
    with pytest.raises(ValidationError, match=r"batch_sizes must hold 1 to 8 values, got 9"):
        ValidationSettings(batch_sizes=list(range(1, 10)))
    assert ValidationSettings(samples=32, time_budget_s=300, atol=None).samples == 32  # the bounds themselves
