"""Sample model directories: complete, offline, deterministic, and with something to compare."""

import hashlib

import pytest
import torch
from mmengine.config import Config

from edge_deploy.conversion import Task, load_model_dir
from edge_deploy.conversion.contract import DEPLOY_CONFIG_NAME
from edge_deploy.errors import EdgeDeployError
from edge_deploy.samples import SAMPLES, SampleError, write_sample

EXPECTED = {
    "resnet18": (Task.CLASSIFICATION, "mmpretrain", [1, 3, 224, 224], {0: "batch"}, ["output"]),
    "rtmdet-tiny": (Task.DETECTION, "mmdet", [1, 3, 320, 320], {}, ["dets", "labels"]),
    "rtmdet-ins-tiny": (Task.INSTANCE_SEGMENTATION, "mmdet", [1, 3, 320, 320], {}, ["dets", "labels", "masks"]),
    "fast-scnn": (Task.SEGMENTATION, "mmseg", [1, 3, 256, 512], {}, ["output"]),
}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_sample_is_a_complete_model_directory(sample_model_dir, name):
    model_dir = load_model_dir(sample_model_dir(name))
    task, codebase, shape, dynamic_axes, outputs = EXPECTED[name]
    manifest = model_dir.manifest
    assert (manifest.task, manifest.codebase) == (task, codebase)
    assert manifest.inputs[0].shape == shape
    assert manifest.inputs[0].dynamic_axes == dynamic_axes
    assert manifest.outputs == outputs
    assert manifest.opset == 11
    assert model_dir.config_path.is_file() and model_dir.checkpoint_path.is_file()
    assert model_dir.inferred == []


@pytest.mark.parametrize("name", list(EXPECTED))
def test_sample_config_downloads_nothing(sample_model_dir, name):
    model_dir = load_model_dir(sample_model_dir(name))
    text = model_dir.config_path.read_text()
    assert "Pretrained" not in text
    assert "https://" not in text and "http://" not in text
    assert Config.fromfile(str(model_dir.config_path)).get("load_from") is None


@pytest.mark.parametrize("name", list(EXPECTED))
def test_sample_batchnorm_is_not_an_identity(sample_model_dir, name):
    checkpoint = load_model_dir(sample_model_dir(name)).checkpoint_path
    state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)["state_dict"]
    running_vars = [value for key, value in state.items() if key.endswith("running_var")]
    running_means = [value for key, value in state.items() if key.endswith("running_mean")]
    assert running_vars, "the sample has BatchNorm layers"
    assert not any(torch.allclose(var, torch.ones_like(var)) for var in running_vars)
    assert not any(torch.allclose(mean, torch.zeros_like(mean)) for mean in running_means)


def test_same_seed_gives_identical_files_and_another_seed_other_weights(sample_model_dir, tmp_path):
    shared = sample_model_dir("fast-scnn")
    again = write_sample("fast-scnn", tmp_path / "again", seed=0)
    other = write_sample("fast-scnn", tmp_path / "other", seed=1)
    for path in shared.iterdir():
        assert sha256(again.root / path.name) == sha256(path), path.name
    assert sha256(other.checkpoint_path) != sha256(again.checkpoint_path)


def test_detector_sample_keeps_every_box(sample_model_dir):
    root = sample_model_dir("rtmdet-tiny")
    model_dir = load_model_dir(root)
    assert Config.fromfile(str(model_dir.config_path)).model.test_cfg.score_thr == 0
    deploy_cfg = Config.fromfile(str(root / DEPLOY_CONFIG_NAME))
    assert deploy_cfg.codebase_config.post_processing.score_threshold == 0
    assert model_dir.manifest.deploy_profile == DEPLOY_CONFIG_NAME


def test_segmentation_sample_exports_logits(sample_model_dir):
    deploy_cfg = Config.fromfile(str(sample_model_dir("fast-scnn") / DEPLOY_CONFIG_NAME))
    assert deploy_cfg.codebase_config.with_argmax is False


def test_unknown_sample_lists_the_names(tmp_path):
    with pytest.raises(SampleError) as caught:
        write_sample("yolo-huge", tmp_path / "x")
    for name in SAMPLES:
        assert name in str(caught.value)
    assert not (tmp_path / "x").exists()


def test_sample_refuses_an_occupied_directory(tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(EdgeDeployError, match="not empty"):
        write_sample("fast-scnn", occupied)
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["occupied"], "no staging directory is left behind"
