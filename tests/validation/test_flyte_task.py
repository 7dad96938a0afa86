"""`validate_onnx` in-process: cached on content, fails the run on a failing gate, serializes its cache."""

import shutil
from collections import OrderedDict
from pathlib import Path

import pytest
from flytekit.configuration import Image, ImageConfig, SerializationSettings
from flytekit.tools.translator import get_serializable
from flytekit.types.directory import FlyteDirectory

from edge_deploy.conversion import ModelDirError, model_identity
from edge_deploy.files import sha256_file
from edge_deploy.validation.errors import ValidationError
from edge_deploy.validation.report import ValidationFailed, ValidationSettings
from tasks.validate import VALIDATION_CACHE_VERSION, validate_onnx
from tests.validation.tiny_models import perturb_initializer

pytestmark = pytest.mark.slow

QUICK = ValidationSettings(samples=1, warmup_runs=1, timed_runs=3, optimize=False)


def _inputs(sample, model_root=None, onnx_dir=None, settings=QUICK):
    return dict(
        model_dir=FlyteDirectory(str(model_root or sample.model_dir.root)),
        onnx_dir=FlyteDirectory(str(onnx_dir or sample.out_dir)),
        identity=model_identity(sample.model_dir),
        onnx_sha256=sample.result.sha256,
        settings=settings,
    )


def test_the_task_returns_the_report_and_the_validated_directory(converted_sample):
    sample = converted_sample("fast-scnn")
    validated_dir, report, photo_reference = validate_onnx(**_inputs(sample))
    assert report.passed and report.model.onnx_sha256 == sample.result.sha256
    # the gate's photos and mmseg's answers to them, for the acceptance of every built image
    assert report.photos is not None and report.photos.unavailable is None and report.photos.photos
    reference_dir = Path(photo_reference.download())
    assert {path.name for path in reference_dir.iterdir()} == {"reference.json", "tensors", *report.photos.photos}
    # and the exported model's raw outputs on each photo's tensor, for the image's OIP endpoint
    assert {path.name for path in (reference_dir / "tensors").iterdir()} == {
        f"{photo}.npz" for photo in report.photos.photos
    }
    files = {path.name for path in Path(validated_dir.download()).iterdir()}
    assert {
        "end2end.onnx",
        "deploy.json",
        "pipeline.json",
        "detail.json",
        "validation.json",
        "validation.html",
    } <= files
    assert report.shipped_onnx in files
    assert not (sample.out_dir / "validation.json").exists()  # the shared conversion output is untouched


def test_cache_key_is_content_and_settings_not_where_the_directories_are(converted_sample, tmp_path, local_flyte_cache):
    sample = converted_sample("fast-scnn")
    _, first, _ = validate_onnx(**_inputs(sample))
    # Another run has the same model and ONNX elsewhere: answered from the cache (these are empty).
    empty_model, empty_onnx = tmp_path / "model", tmp_path / "onnx"
    empty_model.mkdir()
    empty_onnx.mkdir()
    _, second, _ = validate_onnx(**_inputs(sample, empty_model, empty_onnx))
    assert second == first
    # Other settings are another key: the task runs, and refuses the empty directories.
    with pytest.raises(ModelDirError, match=r"expected exactly one \.py file"):
        validate_onnx(**_inputs(sample, empty_model, empty_onnx, ValidationSettings(samples=2, optimize=False)))


def test_an_onnx_directory_with_other_content_is_refused(converted_sample, tmp_path):
    sample = converted_sample("resnet18")
    other = tmp_path / "onnx"
    shutil.copytree(sample.out_dir, other)
    perturb_initializer(sample.onnx_path, other / "end2end.onnx", name="head.fc.weight")
    with pytest.raises(ValidationError, match=f"the input says {sample.result.sha256}"):
        validate_onnx(**_inputs(sample, onnx_dir=other))


def test_a_failing_gate_fails_the_task_with_the_output_named(converted_sample, tmp_path):
    sample = converted_sample("resnet18")
    tampered = tmp_path / "onnx"
    shutil.copytree(sample.out_dir, tampered)
    perturb_initializer(sample.onnx_path, tampered / "end2end.onnx", name="head.fc.weight", scale=1.0)
    inputs = _inputs(sample, onnx_dir=tampered) | {"onnx_sha256": sha256_file(tampered / "end2end.onnx")}
    with pytest.raises(ValidationFailed, match=r"parity: output 'output' max abs error \d\.\de-\d\d > atol"):
        validate_onnx(**inputs)


def test_the_serialized_task_is_cached_on_content_and_ignores_the_directories():
    # the task names the cluster's conversion image (tasks/cluster.py), so serialization needs one
    images = [Image(name=name, fqn="img", tag="1") for name in ("default", "conversion")]
    settings = SerializationSettings(image_config=ImageConfig(default_image=images[0], images=images))
    template = get_serializable(OrderedDict(), settings, validate_onnx).template
    assert template.metadata.discoverable and template.metadata.discovery_version == VALIDATION_CACHE_VERSION
    assert set(template.metadata.cache_ignore_input_vars) == {"model_dir", "onnx_dir"}
    assert set(template.interface.inputs) == {"model_dir", "onnx_dir", "identity", "onnx_sha256", "settings"}
    # with a pod template the resources travel in the pod spec; tests/flyte_specs checks them there
    assert template.k8s_pod is not None
