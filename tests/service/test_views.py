"""What read-scope callers see of server paths: a local model by its path under the local model root
(as callers name it when they queue it), never the server's directory layout."""

from __future__ import annotations

from pathlib import Path

from app.api.schemas import record_view, request_view
from edge_deploy.jobs.model import DeploymentRequest, Job
from edge_deploy.records import DeploymentRecord, ModelSource

ROOT = Path("/srv/edge/models")


def local_record(ref: str) -> DeploymentRecord:
    return DeploymentRecord.new("run-1", ModelSource("lane-net", ref, "", ""))


def test_a_local_model_s_directory_is_shown_relative_to_the_model_root():
    assert record_view(local_record("/srv/edge/models/lane/v2"), ROOT).model.ref == "lane/v2"
    job = Job("run-1", DeploymentRequest(local_dir="/srv/edge/models/lane/v2", targets=("x86_64-cpu",)), "c" * 64)
    assert request_view(job, ROOT).local_dir == "lane/v2"


def test_a_path_outside_the_root_is_shown_by_its_name_only():
    # e.g. a record the CLI wrote for a directory of its own, in the same store
    assert record_view(local_record("/home/ci/builds/lane-net"), ROOT).model.ref == "lane-net"
    assert record_view(local_record("/home/ci/builds/lane-net"), None).model.ref == "lane-net"


def test_a_lakefs_ref_is_shown_as_it_is():
    record = DeploymentRecord.new("run-2", ModelSource("detector", "main", "a" * 64, "model/"))
    assert record_view(record, ROOT).model.ref == "main"
