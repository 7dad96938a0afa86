"""Each sample family converts to a checked ONNX model with MMDeploy's SDK metadata."""

import dataclasses
import hashlib
import json

import onnx
import pytest

from edge_deploy.conversion import ConversionResult, convert, load_model_dir
from edge_deploy.conversion.contract import write_manifest

FAMILIES = ["resnet18", "rtmdet-tiny", "fast-scnn"]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_passes_the_checker_with_the_manifest_io(converted_sample, name):
    converted = converted_sample(name)
    onnx.checker.check_model(str(converted.onnx_path), full_check=True)
    model = onnx.load(str(converted.onnx_path))
    manifest = converted.model_dir.manifest
    assert [i.name for i in model.graph.input] == [spec.name for spec in manifest.inputs]
    assert [o.name for o in model.graph.output] == manifest.outputs
    assert {opset.domain: opset.version for opset in model.opset_import}[""] == manifest.opset


@pytest.mark.parametrize("name", FAMILIES)
def test_result_describes_the_file(converted_sample, name):
    converted = converted_sample(name)
    result = converted.result
    data = converted.onnx_path.read_bytes()
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.size_bytes == len(data)
    assert result.onnx_path == str(converted.onnx_path.resolve())
    spec = converted.model_dir.manifest.inputs[0]
    assert result.inputs == {spec.name: [spec.dynamic_axes.get(axis, size) for axis, size in enumerate(spec.shape)]}
    assert list(result.outputs) == converted.model_dir.manifest.outputs
    assert result.mmdeploy_version == "1.3.1" and result.torch_version.startswith("2.")
    assert result.seconds > 0 and result.peak_rss_mb > 100
    assert result.checkpoint_sha256 == hashlib.sha256(converted.model_dir.checkpoint_path.read_bytes()).hexdigest()
    assert {"config load", "export", "SDK metadata"} <= set(result.stage_seconds)


@pytest.mark.parametrize("name", FAMILIES)
def test_output_directory_holds_sdk_metadata_and_a_portable_record(converted_sample, name):
    converted = converted_sample(name)
    names = sorted(path.name for path in converted.out_dir.iterdir())
    assert names == sorted(
        ["end2end.onnx", "deploy.json", "pipeline.json", "detail.json", "serving.json", "deploy_config.py",
         "conversion.json"]
    )  # fmt: skip
    deploy = json.loads((converted.out_dir / "deploy.json").read_text())
    assert deploy["models"][0]["net"] == "end2end.onnx" and deploy["models"][0]["backend"] == "onnxruntime"
    pipeline = json.loads((converted.out_dir / "pipeline.json").read_text())
    assert pipeline["pipeline"]["tasks"], "pipeline.json carries the preprocessing"
    detail = json.loads((converted.out_dir / "detail.json").read_text())
    assert detail["onnx_config"]["opset_version"] == converted.result.opset
    assert converted.result.sdk_files == ["deploy.json", "pipeline.json", "detail.json"]
    # Published metadata names files, never this machine's paths.
    machine_root = str(converted.out_dir.parent.parent)
    for metadata in ("deploy.json", "pipeline.json", "detail.json", "serving.json", "conversion.json"):
        assert machine_root not in (converted.out_dir / metadata).read_text(), metadata
    stored = ConversionResult.read(converted.out_dir)
    assert stored == converted.result
    serving = json.loads((converted.out_dir / "serving.json").read_text())
    assert serving["task"] == converted.model_dir.manifest.task.value and serving["transforms"]
    assert serving["classes"] and serving["classes_source"]  # every family's config names a dataset


def test_dynamic_batch_classifier_has_a_named_batch_axis(converted_sample):
    result = converted_sample("resnet18").result
    assert result.inputs["input"][0] == "batch"
    assert result.outputs["output"] == ["batch", 1000]


def test_manifest_opset_replaces_the_profile_opset(copy_sample, tmp_path):
    root = copy_sample("fast-scnn")
    model_dir = load_model_dir(root)
    write_manifest(root, dataclasses.replace(model_dir.manifest, opset=13))
    result = convert(load_model_dir(root), tmp_path / "out")
    model = onnx.load(str(tmp_path / "out" / "end2end.onnx"))
    assert {opset.domain: opset.version for opset in model.opset_import}[""] == 13
    assert result.opset == 13
    onnx.checker.check_model(model, full_check=True)
