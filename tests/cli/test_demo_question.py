"""The question `edge-deploy demo` tells the user to ask the image it built: one the runtime takes."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import pytest

from edge_deploy.cli.demo import _ask_the_image
from edge_deploy.conversion.contract import Task
from edge_deploy.runtime.dataplane import PredictOptions
from edge_deploy.samples import SAMPLES


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_the_printed_curl_asks_a_question_the_runtime_takes(sample, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_KEY_DIR", str(tmp_path))
    lines = _ask_the_image("edge/sample:tag", sample)
    curl = next(line for line in lines if line.strip().startswith("curl "))
    url = re.search(r"'(localhost:8080/v1/predict[^']*)'", curl).group(1)
    options = PredictOptions.from_query(dict(parse_qsl(urlsplit(f"http://{url}").query)))  # refuses what it cannot take
    if SAMPLES[sample].task in (Task.DETECTION, Task.INSTANCE_SEGMENTATION):
        # random weights score under the config's threshold: without this the answer would hold no box
        assert options.score_threshold == 0 and options.max_detections
    else:
        assert options == PredictOptions()
    assert any("weights are random" in line for line in lines)
