"""The Flyte tasks run in-process; conversion is cached on content, not on where the directory is."""

import dataclasses
import shutil
from pathlib import Path

import pytest
from flytekit.types.directory import FlyteDirectory

from edge_deploy.conversion import ModelIdentity, load_model_dir
from edge_deploy.files import sha256_file as file_sha256
from tasks.convert import IdentityMismatchError, convert_model, identify_model

pytestmark = pytest.mark.slow


def test_identity_is_the_content_of_the_directory(sample_model_dir):
    root = sample_model_dir("fast-scnn")
    identity = identify_model(model_dir=FlyteDirectory(str(root)))
    model_dir = load_model_dir(root)
    assert isinstance(identity, ModelIdentity)
    assert identity.checkpoint_sha256 == file_sha256(model_dir.checkpoint_path)
    assert identity.config_sha256 == file_sha256(model_dir.config_path)
    assert identity.manifest_sha256 == file_sha256(root / "manifest.yaml")
    assert identity.deploy_profile == "deploy_config.py"
    assert "mmdeploy 1.3.1" in identity.versions and "mmsegmentation 1.2.2" in identity.versions


def test_convert_task_runs_in_process(sample_model_dir):
    root = sample_model_dir("fast-scnn")
    identity = identify_model(model_dir=FlyteDirectory(str(root)))
    onnx_dir, result = convert_model(model_dir=FlyteDirectory(str(root)), identity=identity)
    local = Path(onnx_dir.download())
    assert file_sha256(local / result.onnx_file) == result.sha256
    assert {"deploy.json", "pipeline.json", "detail.json", "conversion.json"} <= {p.name for p in local.iterdir()}
    assert result.checkpoint_sha256 == identity.checkpoint_sha256


def test_cache_key_is_the_identity_not_the_directory_path(sample_model_dir, tmp_path, local_flyte_cache):
    first_place = tmp_path / "run-1" / "model"
    shutil.copytree(sample_model_dir("fast-scnn"), first_place)
    identity = identify_model(model_dir=FlyteDirectory(str(first_place)))
    _, first = convert_model(model_dir=FlyteDirectory(str(first_place)), identity=identity)

    # Another run downloads the same model elsewhere. The second call must be answered from the
    # cache: the directory here is empty, so converting it would fail.
    second_place = tmp_path / "run-2" / "model"
    second_place.mkdir(parents=True)
    _, second = convert_model(model_dir=FlyteDirectory(str(second_place)), identity=identity)
    assert second == first

    # A different identity is a different key: the task runs and refuses the mismatching directory.
    changed = dataclasses.replace(identity, checkpoint_sha256="0" * 64)
    with pytest.raises(IdentityMismatchError, match="checkpoint_sha256: directory has") as caught:
        convert_model(model_dir=FlyteDirectory(str(first_place)), identity=changed)
    assert "does not match the identity it was sent with" in str(caught.value)
