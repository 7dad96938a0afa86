"""`edge-deploy sample` and `edge-deploy convert` from the command line (click, in-process)."""

import json

import pytest
import yaml
from click.testing import CliRunner

from edge_deploy.cli import cli
from edge_deploy.samples import SAMPLES


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_sample_list_names_every_sample():
    result = run("sample", "--list")
    assert result.exit_code == 0
    for name in SAMPLES:
        assert name in result.output


def test_sample_writes_a_directory_and_prints_its_manifest(tmp_path):
    result = run("sample", "fast-scnn", str(tmp_path / "model"), "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["task"] == "segmentation" and manifest["inputs"][0]["shape"] == [1, 3, 256, 512]
    assert yaml.safe_load((tmp_path / "model" / "manifest.yaml").read_text())["codebase"] == "mmseg"


def test_unknown_sample_is_one_error_line(tmp_path):
    result = CliRunner().invoke(cli, ["sample", "nope", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: unknown sample 'nope'; available: resnet18")


@pytest.mark.slow
def test_convert_prints_the_result_as_json(sample_model_dir, tmp_path):
    result = run("convert", str(sample_model_dir("fast-scnn")), str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["outputs"] == {"output": [1, 19, 256, 512]}
    assert (tmp_path / "out" / "end2end.onnx").stat().st_size == data["size_bytes"]


def test_convert_with_a_bad_manifest_exits_1_naming_the_field(copy_sample, tmp_path):
    root = copy_sample("fast-scnn")
    manifest = yaml.safe_load((root / "manifest.yaml").read_text())
    manifest["deploy_profile"] = "fast"
    (root / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    result = CliRunner().invoke(cli, ["convert", str(root), str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "error: " in result.output and "deploy_profile: unknown deploy profile 'fast'" in result.output
    assert not (tmp_path / "out").exists()
