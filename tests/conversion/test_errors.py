"""Every bad input gets an error that names the stage, the field or the key to fix."""

import dataclasses

import pytest
import torch
import yaml

from edge_deploy.conversion import ConversionError, ModelDirError, convert, load_model_dir
from edge_deploy.conversion.errors import describe_export_failure
from edge_deploy.conversion.profiles import available_profiles


def edit_manifest(root, **changes):
    path = root / "manifest.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data))


def assert_no_bare_mmdeploy_message(exc):
    assert "Call id" not in str(exc) and "torch2onnx failed" not in str(exc)


def test_missing_checkpoint_is_named_when_the_directory_loads(copy_sample):
    root = copy_sample("fast-scnn")
    checkpoint = load_model_dir(root).checkpoint_path
    checkpoint.unlink()
    with pytest.raises(ModelDirError) as caught:
        load_model_dir(root)
    assert f"checkpoint: {checkpoint.name} does not exist" in str(caught.value)


def test_checkpoint_vanishing_before_conversion_fails_the_checkpoint_stage(copy_sample, tmp_path):
    root = copy_sample("fast-scnn")
    model_dir = load_model_dir(root)
    model_dir.checkpoint_path.unlink()
    with pytest.raises(ConversionError) as caught:
        convert(model_dir, tmp_path / "out")
    assert caught.value.stage == "checkpoint load"
    assert f"checkpoint {model_dir.checkpoint_path.name} does not exist" in str(caught.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_checkpoint_fails_the_checkpoint_stage_with_the_cause(copy_sample, tmp_path, damage):
    root = copy_sample("fast-scnn")
    model_dir = load_model_dir(root)
    data = model_dir.checkpoint_path.read_bytes()
    model_dir.checkpoint_path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a checkpoint" * 64)
    with pytest.raises(ConversionError) as caught:
        convert(model_dir, tmp_path / "out")
    message = str(caught.value)
    assert caught.value.stage == "checkpoint load"
    assert message.startswith("checkpoint load failed: ")
    assert f"{model_dir.checkpoint_path.name} is not a readable PyTorch checkpoint" in message
    assert_no_bare_mmdeploy_message(caught.value)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == [root.name], "no staging directory is left behind"


@pytest.mark.slow
def test_checkpoint_with_missing_and_unexpected_keys_names_them(copy_sample, tmp_path):
    root = copy_sample("fast-scnn")
    model_dir = load_model_dir(root)
    checkpoint = torch.load(str(model_dir.checkpoint_path), weights_only=True)
    state = checkpoint["state_dict"]
    del state["decode_head.conv_seg.weight"]
    state["neck.extra_layer.weight"] = torch.zeros(3)
    torch.save(checkpoint, str(model_dir.checkpoint_path))
    with pytest.raises(ConversionError) as caught:
        convert(model_dir, tmp_path / "out")
    message = str(caught.value)
    assert caught.value.stage == "checkpoint load"
    assert "1 missing key(s): decode_head.conv_seg.weight" in message
    assert "1 unexpected key(s): neck.extra_layer.weight" in message
    assert_no_bare_mmdeploy_message(caught.value)


@pytest.mark.slow
def test_checkpoint_of_another_architecture_names_a_few_keys(copy_sample, sample_model_dir, tmp_path):
    root = copy_sample("fast-scnn")
    model_dir = load_model_dir(root)
    other = load_model_dir(sample_model_dir("rtmdet-tiny")).checkpoint_path
    model_dir.checkpoint_path.write_bytes(other.read_bytes())
    with pytest.raises(ConversionError) as caught:
        convert(model_dir, tmp_path / "out")
    message = str(caught.value)
    assert "does not match the model config (EncoderDecoder)" in message
    assert "missing key(s): backbone." in message and "unexpected key(s): " in message
    assert "and " in message and " more" in message, "long key lists are shortened"


@pytest.mark.slow
def test_checkpoint_with_a_wrong_shape_names_the_key_and_both_shapes(copy_sample, tmp_path):
    root = copy_sample("fast-scnn")
    model_dir = load_model_dir(root)
    checkpoint = torch.load(str(model_dir.checkpoint_path), weights_only=True)
    checkpoint["state_dict"]["decode_head.conv_seg.weight"] = torch.zeros(7, 128, 1, 1)
    torch.save(checkpoint, str(model_dir.checkpoint_path))
    with pytest.raises(ConversionError) as caught:
        convert(model_dir, tmp_path / "out")
    assert "decode_head.conv_seg.weight (checkpoint [7, 128, 1, 1], model [19, 128, 1, 1])" in str(caught.value)


def test_unknown_deploy_profile_lists_the_available_names(copy_sample):
    root = copy_sample("resnet18")
    edit_manifest(root, deploy_profile="classification_tensorrt_static")
    with pytest.raises(ModelDirError) as caught:
        load_model_dir(root)
    message = str(caught.value)
    assert "deploy_profile: unknown deploy profile 'classification_tensorrt_static'" in message
    for name in available_profiles():
        assert name in message


def test_missing_deploy_config_file_is_named(copy_sample):
    root = copy_sample("rtmdet-tiny")
    (root / "deploy_config.py").unlink()
    with pytest.raises(ModelDirError, match=r"deploy_profile: deploy config file deploy_config\.py does not exist"):
        load_model_dir(root)


@pytest.mark.parametrize("opset", [9, 10, 18, 20])
def test_unsupported_opset_names_the_supported_range(copy_sample, opset):
    root = copy_sample("fast-scnn")
    edit_manifest(root, opset=opset)
    with pytest.raises(ModelDirError) as caught:
        load_model_dir(root)
    assert f"opset: ONNX opset {opset} is not supported: mmdeploy 1.3.1 exports opsets 11..17" in str(caught.value)


def test_unsupported_opset_in_a_manifestless_deploy_config_is_named(copy_sample):
    root = copy_sample("fast-scnn")
    (root / "manifest.yaml").unlink()
    deploy = root / "deploy_config.py"
    deploy.write_text(deploy.read_text().replace("opset_version=11", "opset_version=9"))
    with pytest.raises(ModelDirError, match=r"onnx_config.opset_version: ONNX opset 9 is not supported"):
        load_model_dir(root)


def test_every_bad_manifest_field_is_named_at_once(copy_sample):
    root = copy_sample("fast-scnn")
    edit_manifest(
        root,
        task="detect",
        codebase="mmdetection",
        inputs=[{"name": "input", "shape": [1, 3, 256], "dynamic_axes": {7: "batch"}}],
        targets="linux/arm64",
        tolerances={"atol": "tiny", "rtol": -1, "top1": 0.5},
        colour="blue",
    )
    with pytest.raises(ModelDirError) as caught:
        load_model_dir(root)
    message = str(caught.value)
    for field_error in (
        "task: 'detect' is not one of classification, detection, instance-segmentation, segmentation",
        "codebase: 'mmdetection' is not one of mmpretrain, mmdet, mmseg",
        "inputs[0].shape: [1, 3, 256] is not an NCHW shape",
        "inputs[0].dynamic_axes: axis 7 is not an NCHW axis index",
        "targets: 'linux/arm64' is not a list",
        "tolerances.atol: 'tiny' is not a number",
        "tolerances.rtol: -1 must be a non-negative number",
        "tolerances.top1: unknown field",
        "colour: unknown field",
    ):
        assert field_error in message
    assert "manifest.yaml: 9 problem(s)" in message


def test_manifest_that_is_not_yaml_is_reported(copy_sample):
    root = copy_sample("fast-scnn")
    (root / "manifest.yaml").write_text("task: [classification\n")
    with pytest.raises(ModelDirError, match=r"manifest\.yaml: cannot be parsed"):
        load_model_dir(root)


def test_manifest_and_profile_must_agree_on_dynamic_axes(copy_sample):
    root = copy_sample("fast-scnn")
    edit_manifest(root, inputs=[{"name": "input", "shape": [1, 3, 256, 512], "dynamic_axes": {0: "batch"}}])
    with pytest.raises(ModelDirError) as caught:
        load_model_dir(root)
    assert "inputs[0].dynamic_axes: {0: 'batch'} but deploy profile deploy_config.py makes none dynamic" in str(
        caught.value
    )


def test_manifest_and_profile_must_agree_on_codebase_and_outputs(copy_sample):
    root = copy_sample("resnet18")
    edit_manifest(root, deploy_profile="segmentation_onnxruntime_static", outputs=["logits"])
    with pytest.raises(ModelDirError) as caught:
        load_model_dir(root)
    message = str(caught.value)
    assert "codebase: 'mmpretrain' but deploy profile segmentation_onnxruntime_static is for 'mmseg'" in message
    assert "outputs: ['logits'] but deploy profile segmentation_onnxruntime_static exports ['output']" in message


def test_broken_model_config_fails_the_config_stage(copy_sample, tmp_path):
    root = copy_sample("fast-scnn")
    model_dir = load_model_dir(root)
    model_dir.config_path.write_text(model_dir.config_path.read_text() + "\nmodel = dict(type=\n")
    with pytest.raises(ConversionError) as caught:
        convert(model_dir, tmp_path / "out")
    assert caught.value.stage == "config load"
    assert f"model config {model_dir.config_path.name}: SyntaxError" in str(caught.value)


def test_a_sliding_window_segmentor_is_refused_naming_the_config_change(copy_sample, tmp_path):
    model_dir = load_model_dir(copy_sample("fast-scnn"))
    config = model_dir.config_path
    config.write_text(
        config.read_text() + "\nmodel.update(test_cfg=dict(mode='slide', crop_size=(256, 256), stride=(170, 170)))\n"
    )
    with pytest.raises(ModelDirError) as caught:
        convert(model_dir, tmp_path / "out")
    message = str(caught.value)
    assert f"{config.name}: model.test_cfg.mode is 'slide' ((256, 256) windows, stride (170, 170))" in message
    assert f"set model.test_cfg = dict(mode='whole') in {config.name}" in message
    assert not (tmp_path / "out").exists()

    config.write_text(config.read_text() + "model.update(test_cfg=dict(mode='whole'))\n")
    assert convert(load_model_dir(config.parent), tmp_path / "out").outputs["output"] == [1, 19, 256, 512]


@pytest.mark.slow
def test_unknown_model_type_fails_the_model_build_stage(copy_sample, tmp_path):
    root = copy_sample("fast-scnn")
    model_dir = load_model_dir(root)
    text = model_dir.config_path.read_text().replace("type='FastSCNN'", "type='FasterSCNN'")
    model_dir.config_path.write_text(text)
    with pytest.raises(ConversionError) as caught:
        convert(model_dir, tmp_path / "out")
    assert caught.value.stage == "model build"
    assert "FasterSCNN is not in the" in str(caught.value)
    assert_no_bare_mmdeploy_message(caught.value)


def test_input_names_must_be_one_image(copy_sample):
    root = copy_sample("fast-scnn")
    spec = {"name": "input", "shape": [1, 3, 256, 512]}
    edit_manifest(root, inputs=[spec, dict(spec, name="second")])
    with pytest.raises(ModelDirError, match="2 inputs given"):
        load_model_dir(root)


def test_manifest_dataclasses_are_frozen(sample_model_dir):
    manifest = load_model_dir(sample_model_dir("fast-scnn")).manifest
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.opset = 13


def test_an_export_failure_mmdeploy_cannot_avoid_says_no_manifest_field_fixes_it():
    # what torch's exporter raises inside mmdeploy's DeformConv2d symbolic for TOOD's head
    try:
        try:
            raise TypeError("'int' object is not iterable (occurred when translating DeformConv2dFunction)")
        except TypeError as inner:
            raise RuntimeError("torch2onnx failed") from inner
    except RuntimeError as exc:
        message = describe_export_failure(exc)
    assert message.startswith("TypeError: 'int' object is not iterable")
    assert "No manifest field fixes this" in message and "ModulatedDeformConv2d" in message
    assert describe_export_failure(ValueError("shape mismatch")) == "ValueError: shape mismatch"
