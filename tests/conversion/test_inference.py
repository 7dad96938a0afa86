"""Manifest inference on configs the codebases ship: the size the model really sees, its task, its opset."""

import pytest
from mmengine.config import Config

from edge_deploy.conversion import Task, convert, load_model_dir
from edge_deploy.conversion.export import required_opset
from edge_deploy.samples import write_shipped_config
from edge_deploy.validation.gate import other_sizes_problem, validate
from edge_deploy.validation.report import ValidationSettings

pytestmark = pytest.mark.slow

FASTER_RCNN = "mmdet:faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"


def shipped(spec, tmp_path):
    return write_shipped_config(spec, tmp_path / "model")


def test_a_keep_ratio_detector_gets_the_dynamic_profile_at_the_padded_size_of_a_camera_frame(tmp_path):
    # Resize(scale=(1333, 800), keep_ratio=True), then the data preprocessor pads to a multiple of 32.
    model_dir = load_model_dir(shipped(FASTER_RCNN, tmp_path))
    manifest = model_dir.manifest
    assert manifest.task is Task.DETECTION and manifest.deploy_profile == "detection_onnxruntime_dynamic"
    assert manifest.inputs[0].shape == [1, 3, 800, 1088]  # 480x640 -> 800x1067 -> padded to 800x1088
    assert manifest.inputs[0].dynamic_axes == {0: "batch", 2: "height", 3: "width"}
    assert any("depends on the image (480x640 -> 800x1088, 640x480 -> 1088x800" in n for n in model_dir.inferred)


def test_a_fixed_resize_with_size_divisor_padding_is_static_at_the_padded_size(tmp_path):
    root = shipped(FASTER_RCNN, tmp_path)
    config_path = next(root.glob("*.py"))
    cfg = Config.fromfile(str(config_path))
    for step in [*cfg.test_pipeline, *cfg.test_dataloader.dataset.pipeline]:
        if step["type"] == "Resize":
            step["keep_ratio"] = False  # every image becomes 800x1333, which the preprocessor pads to 800x1344
    cfg.dump(str(config_path))
    model_dir = load_model_dir(root)
    assert model_dir.manifest.deploy_profile == "detection_onnxruntime_static"
    assert model_dir.manifest.inputs[0].shape == [1, 3, 800, 1344]


@pytest.mark.parametrize(
    ("spec", "head"),
    [
        ("mmdet:mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py", "FCNMaskHead"),
        ("mmdet:rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py", "RTMDetInsSepBNHead"),
    ],
)
def test_a_detector_with_a_mask_head_segments_instances(spec, head, tmp_path):
    model_dir = load_model_dir(shipped(spec, tmp_path))
    assert model_dir.manifest.task is Task.INSTANCE_SEGMENTATION
    assert model_dir.manifest.outputs == ["dets", "labels", "masks"]
    assert any(f"the model has a mask head ({head})" in note for note in model_dir.inferred)


def test_a_crop_the_codebase_defines_itself_is_run_not_guessed(tmp_path):
    # EfficientNet's test pipeline crops with EfficientNetCenterCrop, not CenterCrop.
    model_dir = load_model_dir(shipped("mmpretrain:efficientnet/efficientnet-b0_8xb32_in1k.py", tmp_path))
    assert model_dir.manifest.inputs[0].shape == [1, 3, 224, 224]
    assert model_dir.manifest.deploy_profile == "classification_onnxruntime_static"


def test_the_conversion_chooses_what_the_manifest_left_open_and_the_gate_checks_that(tmp_path):
    # SegFormer: opset 11 fails ("aten::unflatten ... added in version 13"), and its dynamic export
    # freezes the attention's reshape to the traced size, so it cannot run at another size.
    model_dir = load_model_dir(shipped("mmseg:segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py", tmp_path))
    assert model_dir.manifest.opset == 11 and not model_dir.opset_pinned and not model_dir.profile_pinned
    assert model_dir.manifest.deploy_profile == "segmentation_onnxruntime_dynamic"
    result = convert(model_dir, tmp_path / "onnx")
    assert result.opset == 13
    assert "opset 11 (the deploy profile's) failed" in result.opset_reason and "13" in result.opset_reason
    assert result.deploy_profile == "segmentation_onnxruntime_static"
    assert "does not run at 1x3x384x512" in result.profile_reason
    assert result.inputs == {"input": [1, 3, 512, 683]}

    report = validate(model_dir, tmp_path / "onnx", settings=ValidationSettings(samples=1, timed_runs=3))
    assert report.passed, report.failure
    assert report.model.deploy_profile == "segmentation_onnxruntime_static"
    assert [case.inputs["input"] for case in report.parity.cases] == [[1, 3, 512, 683]]  # static: one size


@pytest.mark.parametrize(
    ("spec", "task", "why"),
    [
        # PSPNet's pyramid pooling: the export runs at other sizes, but pools the traced size's windows
        # there, so its labels are not PyTorch's. Only the comparison with PyTorch can tell.
        (
            "mmseg:pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py",
            "segmentation",
            "disagrees with PyTorch at another size",
        ),
        # SOLOv2's mask head, as mmdeploy rewrites it, decodes the first image of a batch only: the
        # export runs at batch 2, but PyTorch (with the same rewrites) fails there.
        ("mmdet:solov2/solov2_r50_fpn_1x_coco.py", "instance-seg", "PyTorch reference failed at input 2x3x800x1088"),
    ],
)
def test_a_dynamic_export_that_does_not_hold_at_other_sizes_goes_static_and_says_why(spec, task, why, tmp_path):
    model_dir = load_model_dir(shipped(spec, tmp_path))
    assert model_dir.manifest.deploy_profile == f"{task}_onnxruntime_dynamic"
    result = convert(model_dir, tmp_path / "onnx", size_check=other_sizes_problem)
    assert result.deploy_profile == f"{task}_onnxruntime_static"
    assert why in result.profile_reason
    assert result.inputs == {"input": model_dir.manifest.inputs[0].shape}
    assert sorted(path.name for path in (tmp_path / "onnx").iterdir()) == sorted(
        ["end2end.onnx", "conversion.json", "deploy_config.py", "serving.json", *result.sdk_files]
    )


@pytest.mark.parametrize(
    ("message", "needed"),
    [
        (
            "Exporting the operator 'aten::unflatten' to ONNX opset version 11 is not supported. Support for this "
            "operator was added in version 13, try exporting with this version.",
            13,
        ),
        ("Unsupported: ONNX export of operator scaled_dot_product_attention, opset version 14 is required", 14),
        ("needs opset 18", None),  # beyond what mmdeploy exports
        ("shape mismatch in Concat", None),
    ],
)
def test_the_opset_an_exporter_error_names(message, needed):
    assert required_opset(message, current=11) == needed
