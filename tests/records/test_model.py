"""The deployment record: lossless JSON (it is record.json in lakeFS), strict decoding, Flyte transport."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_deploy.records import (
    FAILED,
    RUNNING,
    SCHEMA_VERSION,
    SUCCEEDED,
    DeploymentRecord,
    ImageSet,
    ModelFile,
    ModelSource,
    OutputError,
    PlatformImage,
    RecordFormatError,
    RecordStatus,
    ValidationSummary,
)
from tests.records.builders import deployment

text = st.text(min_size=1, max_size=20)
finite = st.floats(allow_nan=False)
sizes = st.integers(min_value=0, max_value=2**53)


@st.composite
def records(draw) -> DeploymentRecord:
    base = deployment(draw(st.text(min_size=1, max_size=30).filter(str.strip)), repo=draw(text))
    state = draw(st.sampled_from([RUNNING, SUCCEEDED, FAILED]))
    status = RecordStatus(FAILED, draw(text), draw(st.text())) if state == FAILED else RecordStatus(state)
    platforms = draw(st.lists(st.builds(PlatformImage, text, text, text, sizes), max_size=4))
    return DeploymentRecord(
        run_id=base.run_id,
        model=ModelSource(
            base.model.repo, draw(text), draw(text), "model/", draw(st.lists(st.builds(ModelFile, text, sizes, text)))
        ),
        status=status,
        conversion=draw(st.none() | st.just(base.conversion)),
        validation=draw(
            st.none()
            | st.builds(
                ValidationSummary, st.booleans(), st.lists(st.builds(OutputError, text, finite)), finite, finite
            )
        ),
        images=draw(st.none() | st.builds(ImageSet, text, text, st.just(platforms))),
        published=draw(st.none() | st.just(base.published)),
        timings=draw(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_-]{0,15}", fullmatch=True), finite, max_size=6)),
        created_at=base.created_at,
        updated_at=base.updated_at,
    )


@settings(max_examples=150, deadline=None)
@given(records())
def test_any_record_survives_a_json_round_trip_unchanged(record: DeploymentRecord) -> None:
    assert DeploymentRecord.from_json(record.to_json()) == record


def test_record_json_names_the_schema_version_first_and_keeps_every_field() -> None:
    record = deployment("run-42")
    data = json.loads(record.to_json())
    assert next(iter(data)) == "schema_version" and data["schema_version"] == SCHEMA_VERSION
    assert data["images"]["platforms"][1]["platform"] == "linux/arm64"
    assert data["validation"]["worst_errors"][1] == {"output": "output.1", "max_abs_error": 9.0e-8}
    assert data["model"]["files"][0]["path"] == "model.pth"


def test_an_infinite_worst_error_round_trips() -> None:
    record = deployment("run-inf").updated(validation=ValidationSummary(False, [OutputError("scores", math.inf)]))
    assert DeploymentRecord.from_json(record.to_json()).validation.worst_errors[0].max_abs_error == math.inf


def test_times_are_normalized_to_one_utc_shape_so_text_order_is_time_order() -> None:
    record = deployment("run-1").updated(at="2026-03-01T14:00:00+02:00")
    assert record.updated_at == "2026-03-01T12:00:00.000000Z"
    with pytest.raises(RecordFormatError, match="no timezone"):
        deployment("run-1").updated(at="2026-03-01T12:00:00")


def test_state_changes_move_updated_at_and_keep_the_rest() -> None:
    record = deployment("run-1", state=RUNNING)
    failed = record.failed("validate", "dets: max abs error 0.3 > 1e-3", at="2026-03-01T13:00:00Z")
    assert failed.status == RecordStatus(FAILED, "validate", "dets: max abs error 0.3 > 1e-3")
    assert failed.updated_at > record.updated_at and failed.created_at == record.created_at
    assert failed.images == record.images


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["images"]["platforms"][0].update(size="big"), r"images\.platforms\[0\]\.size must be int"),
        (lambda d: d["model"].pop("commit_id"), r"model\.commit_id is missing"),
        (lambda d: d.update(surprise=1), r"surprise is an unknown field"),
        (lambda d: d["validation"].update(passed="yes"), r"validation\.passed must be bool"),
        (lambda d: d["status"].update(state="done"), r"status\.state must be one of running, succeeded, failed"),
        (lambda d: d["status"].update(state="failed", failed_stage=None), r"must name the stage that failed"),
        (lambda d: d.update(schema_version=2), r"schema_version 2 was written by a newer edge-deploy"),
        (lambda d: d.update(timings={"a.b": 1.0}), r"timings key 'a.b' is not a stage name"),
    ],
)
def test_a_malformed_record_json_is_refused_naming_the_field(change, message) -> None:
    data = deployment("run-1").to_dict()
    change(data)
    with pytest.raises(RecordFormatError, match=message) as failure:
        DeploymentRecord.from_json(json.dumps(data), "lakefs://detector/main/edge/record.json")
    assert str(failure.value).startswith("lakefs://detector/main/edge/record.json: ")


def test_not_json_at_all_is_refused_naming_the_source() -> None:
    with pytest.raises(RecordFormatError, match=r"runs/7/record\.json: not valid JSON"):
        DeploymentRecord.from_json(b"\x89PNG", "runs/7/record.json")


def test_flyte_passes_a_record_between_tasks_unchanged() -> None:
    from flytekit.core.context_manager import FlyteContextManager
    from flytekit.core.type_engine import TypeEngine

    record = deployment("run-flyte", state=FAILED)
    context = FlyteContextManager.current_context()
    literal = TypeEngine.to_literal(context, record, DeploymentRecord, TypeEngine.to_literal_type(DeploymentRecord))
    assert TypeEngine.to_python_value(context, literal, DeploymentRecord) == record
