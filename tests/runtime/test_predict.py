"""/v1/predict on real photos, served by `edge-deploy runtime` (the command a developer runs, in its
own process), against the OpenMMLab codebases' own inference APIs: one sample per task family
(see task_answers for what is compared)."""

from __future__ import annotations

import sys

import pytest
import requests

from tests.fixtures.processes import free_port, running
from tests.runtime.task_answers import TASK_SAMPLES, check_answers

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task", list(TASK_SAMPLES))
def test_answers_match_the_openmmlab_inference_api(task_sample, task, tmp_path):
    sample = task_sample(TASK_SAMPLES[task])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "edge_deploy.cli", "runtime", str(sample.onnx_dir), "--port", str(port)]
    with running(argv, "edge-deploy runtime", lambda: requests.get(url + "/readyz").ok, tmp_path / "runtime.log"):
        assert requests.get(url + "/v1/model", timeout=10).json()["task"] == task
        assert check_answers(task, url, sample.source) > 0
