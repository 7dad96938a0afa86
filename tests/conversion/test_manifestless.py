"""A directory without a manifest converts when the config makes everything inferable, and says so."""

import logging

import pytest
from mmengine.config import Config

from edge_deploy.conversion import ConversionResult, ModelDirError, Task, convert, load_model_dir


def without_manifest(root):
    (root / "manifest.yaml").unlink()
    return root


@pytest.mark.slow
def test_classifier_without_manifest_converts_and_reports_what_it_inferred(copy_sample, tmp_path, caplog):
    root = without_manifest(copy_sample("resnet18"))
    with caplog.at_level(logging.INFO, logger="edge_deploy.conversion"):
        model_dir = load_model_dir(root)
    assert model_dir.manifest_path is None
    assert model_dir.manifest.task is Task.CLASSIFICATION and model_dir.manifest.codebase == "mmpretrain"
    assert model_dir.manifest.deploy_profile == "classification_onnxruntime_static"
    assert model_dir.manifest.inputs[0].shape == [1, 3, 224, 224]
    inferred = "\n".join(model_dir.inferred)
    assert "codebase=mmpretrain (default_scope=mmpretrain)" in inferred
    assert "deploy_profile=classification_onnxruntime_static (built-in static profile: the input size is fixed)" in (
        inferred
    )
    assert "input shape 1x3x224x224 (the test pipeline gives every image this size: 480x640 -> 224x224" in inferred
    assert "has no manifest; inferred:" in caplog.text and "480x640 -> 224x224" in caplog.text

    result = convert(model_dir, tmp_path / "out")
    assert result.inputs == {"input": [1, 3, 224, 224]}
    assert result.outputs == {"output": [1, 1000]}
    assert result.inferred == model_dir.inferred
    assert ConversionResult.read(tmp_path / "out").inferred == model_dir.inferred


def test_detector_without_manifest_takes_the_size_its_pipeline_pads_every_image_to(copy_sample):
    root = without_manifest(copy_sample("rtmdet-tiny"))
    model_dir = load_model_dir(root)
    assert model_dir.manifest.deploy_profile == "deploy_config.py", "the directory's deploy config is used"
    assert model_dir.manifest.inputs[0].shape == [1, 3, 320, 320]
    assert model_dir.manifest.outputs == ["dets", "labels"]
    assert any("the test pipeline gives every image this size: 480x640 -> 320x320" in n for n in model_dir.inferred)


def test_segmentor_whose_size_depends_on_the_image_is_traced_at_a_camera_frames_size(copy_sample):
    # Resize(scale=(512, 256), keep_ratio=True): a 480x640 frame becomes 256x341, a 640x480 one 341x256.
    model_dir = load_model_dir(without_manifest(copy_sample("fast-scnn")))
    assert model_dir.manifest.task is Task.SEGMENTATION
    assert model_dir.manifest.inputs[0].shape == [1, 3, 256, 341]
    assert any("depends on the image (480x640 -> 256x341, 640x480 -> 341x256" in n for n in model_dir.inferred)


def test_codebase_comes_from_the_registry_without_default_scope(copy_sample):
    root = without_manifest(copy_sample("fast-scnn"))
    config_path = next(p for p in root.glob("*.py") if p.name != "deploy_config.py")
    cfg = Config.fromfile(str(config_path))
    cfg.pop("default_scope")
    cfg.dump(str(config_path))
    model_dir = load_model_dir(root)
    assert model_dir.manifest.codebase == "mmseg"
    assert any("model.type=EncoderDecoder is registered in mmseg" in note for note in model_dir.inferred)


def test_uninferable_input_size_asks_for_a_manifest(copy_sample):
    root = without_manifest(copy_sample("resnet18"))
    config_path = next(root.glob("*.py"))
    cfg = Config.fromfile(str(config_path))
    for pipeline in (cfg.test_pipeline, cfg.test_dataloader.dataset.pipeline):
        pipeline[:] = [step for step in pipeline if step["type"] != "CenterCrop"]
    cfg.dump(str(config_path))
    with pytest.raises(ModelDirError) as caught:
        load_model_dir(root)
    # ResizeEdge(256) alone: the size follows the image, and the classification profiles fix it.
    assert "inputs: cannot infer the input shape: the test pipeline's size depends on the image" in str(caught.value)
    assert "write a manifest with inputs[0].shape" in str(caught.value)


def test_two_checkpoints_without_manifest_ask_which_one(copy_sample):
    root = without_manifest(copy_sample("fast-scnn"))
    (root / "other.pth").write_bytes(b"")
    with pytest.raises(ModelDirError, match=r"checkpoint: expected exactly one \.pth file"):
        load_model_dir(root)
