"""The runtime's replay of a recorded test pipeline against OpenMMLab's own: the same photo must give
the same input tensor, for the resize backends and interpolations the codebases' configs ask for.
Most of mmpretrain's configs resize with Pillow (`backend="pillow"`), some with its bicubic filter;
a runtime that resized those with OpenCV's bilinear gave other top-1 scores."""

from __future__ import annotations

import numpy as np
import pytest

from edge_deploy.runtime.preprocess import Normalization, PipelineError, Preprocess

IMAGENET = Normalization(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), to_rgb=True)
# the test pipelines of mmpretrain's shipped configs, as the conversion records them (serving.json)
RESIZE_EDGE = {"type": "ResizeEdge", "scale": 256, "edge": "short"}
CROP = {"type": "CenterCrop", "crop_size": 224}
PIPELINES = {
    "resnet50 (OpenCV bilinear)": [RESIZE_EDGE, CROP],
    "resnext50 (Pillow bilinear)": [{**RESIZE_EDGE, "backend": "pillow"}, CROP],
    "convnext (Pillow bicubic)": [{**RESIZE_EDGE, "backend": "pillow", "interpolation": "bicubic"}, CROP],
    "a keep-ratio Resize with Pillow's lanczos": [
        {"type": "Resize", "scale": (320, 240), "keep_ratio": True, "backend": "pillow", "interpolation": "lanczos"},
        {"type": "Pad", "size": (320, 320), "pad_val": 0},
    ],
}


def openmmlab_tensor(transforms: list[dict], frame: np.ndarray) -> np.ndarray:
    """mmpretrain's own pipeline and data preprocessor on `frame` (BGR, as LoadImageFromFile gives it)."""
    from edge_deploy.conversion.environment import ensure_torchvision_importable

    ensure_torchvision_importable()  # before mmengine and mmpretrain import torchvision
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    from mmpretrain.models.utils import ClsDataPreprocessor

    with DefaultScope.overwrite_default_scope("mmpretrain"):
        pipeline = Compose([*transforms, {"type": "PackInputs"}])
        packed = pipeline({"img": frame, "img_shape": frame.shape[:2], "ori_shape": frame.shape[:2]})
    preprocessor = ClsDataPreprocessor(mean=list(IMAGENET.mean), std=list(IMAGENET.std), to_rgb=IMAGENET.to_rgb)
    return preprocessor({"inputs": [packed["inputs"]], "data_samples": [packed["data_samples"]]})["inputs"].numpy()


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    from skimage import data

    # RGB -> BGR, as OpenCV decodes; landscape, portrait and square frames
    return {name: np.ascontiguousarray(getattr(data, name)()[..., ::-1]) for name in ("chelsea", "astronaut")} | {
        "rocket, upright": np.ascontiguousarray(data.rocket()[..., ::-1].transpose(1, 0, 2))
    }


@pytest.mark.parametrize("name", PIPELINES)
def test_a_recorded_pipeline_gives_the_tensor_openmmlab_gives(name, photos):
    transforms = PIPELINES[name]
    replay = Preprocess([{"type": "LoadImageFromFile"}, *transforms, {"type": "PackInputs"}], IMAGENET)
    for photo, frame in photos.items():
        expected = openmmlab_tensor(transforms, frame)
        got = replay(frame).tensor
        assert got.shape == expected.shape, photo
        # OpenCV's bilinear is replayed to within one level in rows an upscale clamps; Pillow is Pillow
        np.testing.assert_allclose(got, expected, atol=1.01 / min(IMAGENET.std), err_msg=photo)
        if "Pillow" in name:
            np.testing.assert_array_equal(got, expected, err_msg=photo)


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        ({**RESIZE_EDGE, "backend": "turbojpeg"}, r"ResizeEdge: resize backend 'turbojpeg' is not supported"),
        ({**RESIZE_EDGE, "interpolation": "bicubic"}, r"interpolation 'bicubic' with backend 'cv2' is not supported"),
        ({**RESIZE_EDGE, "backend": "pillow", "interpolation": "area"}, r"'area' with backend 'pillow'"),
        ({**RESIZE_EDGE, "antialias": True}, r"ResizeEdge: parameter\(s\) antialias not supported"),
        ({"type": "Pad", "size": [8, 8], "pad_mode": "edge"}, r"Pad: parameter\(s\) pad_mode not supported"),
        ({"type": "Resize", "scale": [8, 8], "scale_factor": 2.0}, r"both scale and scale_factor"),
    ],
)
def test_a_parameter_the_runtime_does_not_replay_is_refused_not_ignored(transform, message):
    with pytest.raises(PipelineError, match=message):
        Preprocess([transform], IMAGENET)
