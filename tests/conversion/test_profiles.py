"""Built-in deploy profiles: loadable by name, with MMDeploy 1.3.1's values."""

import pytest

from edge_deploy.conversion import profiles
from edge_deploy.conversion.manifest import profile_dynamic_axes


@pytest.mark.parametrize("name", profiles.available_profiles())
def test_every_profile_loads_as_an_onnxruntime_deploy_config(name):
    cfg = profiles.load_profile(profiles.profile_path(name))
    _, codebase, _ = profiles.BUILTIN_PROFILES[name]
    assert cfg.backend_config.type == "onnxruntime"
    assert cfg.codebase_config.type == codebase
    assert cfg.onnx_config.opset_version == 11
    assert cfg.onnx_config.save_file == "end2end.onnx"
    assert cfg.onnx_config.input_names == ["input"]
    axes = profile_dynamic_axes(cfg)
    assert bool(axes) == name.endswith("_dynamic")


def test_dynamic_profiles_make_the_expected_axes_dynamic():
    def axes(name):
        return profile_dynamic_axes(profiles.load_profile(profiles.profile_path(name)))

    assert axes("classification_onnxruntime_dynamic") == {"input": {0: "batch"}, "output": {0: "batch"}}
    assert axes("detection_onnxruntime_dynamic")["input"] == {0: "batch", 2: "height", 3: "width"}
    assert axes("detection_onnxruntime_dynamic")["dets"] == {0: "batch", 1: "num_dets"}
    assert axes("segmentation_onnxruntime_dynamic")["output"] == {0: "batch", 2: "height", 3: "width"}


def test_detection_profiles_keep_mmdeploys_post_processing():
    cfg = profiles.load_profile(profiles.profile_path("detection_onnxruntime_static"))
    assert cfg.onnx_config.output_names == ["dets", "labels"]
    post = cfg.codebase_config.post_processing
    assert (post.score_threshold, post.iou_threshold, post.keep_top_k, post.pre_top_k) == (0.05, 0.5, 100, 5000)


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_segmentation_profiles_export_logits_unless_the_argmax_is_asked_for(kind):
    logits = profiles.load_profile(profiles.profile_path(f"segmentation_onnxruntime_{kind}"))
    class_map = profiles.load_profile(profiles.profile_path(f"segmentation-argmax_onnxruntime_{kind}"))
    assert logits.codebase_config.with_argmax is False and class_map.codebase_config.with_argmax is True
    assert class_map.onnx_config == logits.onnx_config and class_map.backend_config == logits.backend_config
    assert profiles.default_profile("segmentation", dynamic=kind == "dynamic") == f"segmentation_onnxruntime_{kind}"


def test_unknown_profile_lists_the_names():
    with pytest.raises(profiles.UnknownProfileError) as caught:
        profiles.profile_path("yolo")
    assert "unknown deploy profile 'yolo'; available: classification_onnxruntime_dynamic" in str(caught.value)


def test_default_profiles_are_static():
    assert profiles.default_profile("detection") == "detection_onnxruntime_static"
    assert profiles.default_profile("classification", dynamic=True) == "classification_onnxruntime_dynamic"


def test_a_manifest_survives_the_json_conversion_json_keeps_it_as():
    import json

    from edge_deploy.conversion import InputSpec, Manifest, Task, Tolerances

    manifest = Manifest(
        task=Task.INSTANCE_SEGMENTATION,
        codebase="mmdet",
        inputs=[InputSpec("input", [1, 3, 800, 1088], {0: "batch", 2: "height", 3: "width"})],
        outputs=["dets", "labels", "masks"],
        deploy_profile="instance-seg_onnxruntime_dynamic",
        opset=13,
        targets=["linux/amd64"],
        tolerances=Tolerances(1e-3, 1e-4, 0.99),
        config="m.py",
        checkpoint="m.pth",
    )
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest
