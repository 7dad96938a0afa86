"""serving.json's pipeline (edge_deploy.conversion.serving): one the runtime cannot replay turns
/v1/predict off with the reason, for static and dynamic exports alike; it is never recorded for the
runtime to refuse at start-up."""

import dataclasses

from edge_deploy.conversion import load_model_dir
from edge_deploy.conversion.contract import write_manifest
from edge_deploy.conversion.openmmlab import load_configs
from edge_deploy.conversion.serving import serving_recipe

# CenterNet's test pipeline (mmdet's centernet configs)
CENTER_CROP_PAD = {
    "type": "RandomCenterCropPad",
    "ratios": None,
    "border": None,
    "mean": [0, 0, 0],
    "std": [1, 1, 1],
    "to_rgb": True,
    "test_mode": True,
    "test_pad_mode": ["logical_or", 31],
    "test_pad_add_pix": 1,
}


def with_test_pipeline(copy_sample, transforms: list[dict], dynamic: bool) -> dict:
    root = copy_sample("rtmdet-tiny")
    manifest = load_model_dir(root).manifest
    if dynamic:
        spec = dataclasses.replace(manifest.inputs[0], dynamic_axes={0: "batch", 2: "height", 3: "width"})
        profile = "detection_onnxruntime_dynamic"  # a built-in profile, as a user's dynamic export names it
        write_manifest(root, dataclasses.replace(manifest, inputs=[spec], deploy_profile=profile))
    model_dir = load_model_dir(root)
    deploy_cfg, model_cfg = load_configs(model_dir)
    model_cfg.test_pipeline = [{"type": "LoadImageFromFile"}, *transforms, {"type": "PackDetInputs"}]
    return serving_recipe(model_dir, deploy_cfg, model_cfg)


def test_an_unknown_transform_turns_predict_off_for_a_dynamic_export(copy_sample):
    # it was recorded as it was, and the runtime then refused to start: CenterNet's image never served
    recipe = with_test_pipeline(copy_sample, [CENTER_CROP_PAD], dynamic=True)
    assert "'RandomCenterCropPad' is not supported" in recipe["unservable"]
    assert "transforms" not in recipe


def test_an_unknown_parameter_turns_predict_off(copy_sample):
    resize = {"type": "Resize", "scale": [320, 320], "keep_ratio": True, "backend": "turbojpeg"}
    recipe = with_test_pipeline(copy_sample, [resize], dynamic=True)
    assert "resize backend 'turbojpeg' is not supported" in recipe["unservable"]


def test_a_replayable_pipeline_is_recorded(copy_sample):
    resize = {"type": "Resize", "scale": [320, 320], "keep_ratio": True, "backend": "pillow"}
    recipe = with_test_pipeline(copy_sample, [resize], dynamic=True)
    assert "unservable" not in recipe
    assert recipe["transforms"][1] == resize
