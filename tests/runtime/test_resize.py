"""The runtime's numpy resampling against what OpenMMLab computes with OpenCV and torch, and its COCO
RLE against pycocotools. The runtime ships neither OpenCV nor torch, so these are its only proof."""

from __future__ import annotations

import numpy as np
import pytest

from edge_deploy.runtime import answers, resize


def test_bilinear_uint8_is_opencvs_inter_linear_to_within_one_level():
    import cv2

    rng = np.random.default_rng(0)
    differing = total = exact = 0
    for case in range(200):
        h, w = (int(v) for v in rng.integers(2, 500, 2))
        height, width = (int(v) for v in rng.integers(1, 700, 2))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if case % 2:
            image = cv2.GaussianBlur(image, (0, 0), 3)  # photo-like smoothness as well as noise
        expected = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        got = resize.bilinear_uint8(image, width, height)
        difference = np.abs(expected.astype(int) - got.astype(int))
        assert got.shape == expected.shape and difference.max() <= 1
        differing += int((difference > 0).sum())
        total += difference.size
        exact += int(difference.max() == 0)
    assert differing / total < 0.005  # measured: 0.12 %, all in rows an upscale clamps at the border
    assert exact >= 60


def test_bilinear_uint8_of_a_downscale_is_exact():
    import cv2

    rng = np.random.default_rng(1)
    for h, w, height, width in [
        (480, 640, 240, 320),
        (1080, 1920, 360, 640),
        (600, 512, 293, 250),
        (427, 640, 213, 320),
    ]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        np.testing.assert_array_equal(resize.bilinear_uint8(image, width, height), cv2.resize(image, (width, height)))


@pytest.mark.parametrize("align_corners", [False, True])
def test_bilinear_float_is_torchs_interpolate(align_corners):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(2)
    for h, w, height, width in [(64, 128, 300, 451), (80, 80, 427, 640), (33, 17, 12, 40)]:
        values = rng.standard_normal((h, w, 5)).astype(np.float32)
        expected = (
            F.interpolate(
                torch.from_numpy(values.transpose(2, 0, 1))[None],
                size=(height, width),
                mode="bilinear",
                align_corners=align_corners,
            )[0]
            .numpy()
            .transpose(1, 2, 0)
        )
        np.testing.assert_allclose(resize.bilinear_float(values, width, height, align_corners), expected, atol=2e-5)


@pytest.mark.parametrize("align_corners", [False, True])
def test_bilinear_argmax_in_bands_is_torchs_resize_then_argmax(align_corners):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(4)
    for h, w, height, width, band_bytes in [
        (64, 128, 300, 451, 1),
        (80, 80, 427, 640, 100_000),
        (33, 17, 12, 40, 8 << 20),
    ]:
        logits = rng.standard_normal((h, w, 19)).astype(np.float32)
        got = resize.bilinear_argmax(logits, width, height, align_corners, band_bytes=band_bytes)
        # The same arithmetic as the whole-map resize, band by band ...
        np.testing.assert_array_equal(got, resize.bilinear_float(logits, width, height, align_corners).argmax(axis=2))
        # ... and mmseg's own postprocess: torch's resize of the logits, then the argmax over classes.
        torch_logits = torch.from_numpy(logits.transpose(2, 0, 1))[None]
        resized = F.interpolate(torch_logits, size=(height, width), mode="bilinear", align_corners=align_corners)
        expected = resized[0].argmax(dim=0).numpy()
        assert got.shape == expected.shape and (got == expected).mean() >= 0.9999  # float near-ties only


def test_nearest_is_torchs_legacy_nearest():
    import torch
    import torch.nn.functional as F

    labels = np.random.default_rng(3).integers(0, 19, (64, 128)).astype(np.int64)
    for height, width in [(427, 640), (300, 451), (31, 17)]:
        expected = F.interpolate(torch.from_numpy(labels)[None, None].float(), size=(height, width), mode="nearest")
        np.testing.assert_array_equal(resize.nearest(labels, width, height), expected[0, 0].numpy().astype(np.int64))


def test_a_per_box_mask_is_pasted_as_mmdeploy_pastes_it():
    import torch
    from mmdeploy.codebase.mmdet.deploy.object_detection_model import End2EndModel

    rng = np.random.default_rng(4)
    masks = rng.random((3, 28, 28)).astype(np.float32)
    boxes = np.array([[10.3, 20.7, 120.2, 90.1], [0, 0, 639.0, 426.0], [300.5, 200.25, 310.0, 260.0]], dtype=np.float32)
    expected = (
        End2EndModel.postprocessing_masks(torch.from_numpy(boxes), torch.from_numpy(masks), 640, 427).numpy() >= 0.5
    )
    for mask, box, want in zip(masks, boxes, expected, strict=True):
        into = np.zeros((427, 640), dtype=bool)
        answers._paste_in_box(mask, box, into, 0.5)
        # bilinear weights in float32 on both sides; a pixel exactly at 0.5 may round either way
        assert (into != want).sum() <= 0.001 * want.size


@pytest.mark.parametrize(
    ("photo_hw", "image_hw", "input_hw"),
    [((600, 512), (640, 546), (640, 640)), ((427, 640), (320, 480), (320, 480)), ((512, 512), (640, 640), (640, 640))],
)
def test_whole_input_masks_are_resized_as_mmdets_rtmdet_ins_head_resizes_them(photo_hw, image_hw, input_hw):
    """mmdet's RTMDetInsHead (and CondInst's) on the same logits: the input's mask logits resized to
    ceil(size / scale) (the height with the width's factor), cut to the photo, sigmoid > 0.5. The
    export hands over sigmoid(logits); resizing those, or cutting the padding off first, moved thin
    masks' edges (IoU 0.89 against PyTorch on a letterboxed photo)."""
    import math

    import torch
    import torch.nn.functional as F

    from edge_deploy.runtime.preprocess import Prepared

    rng = np.random.default_rng(6)
    stride, (height, width) = 8, input_hw
    coarse = torch.from_numpy(rng.normal(-1.0, 4.0, (3, height // stride, width // stride)).astype(np.float32))
    logits = F.interpolate(coarse[None], scale_factor=stride, mode="bilinear")  # what the export computes
    scale = (image_hw[1] / photo_hw[1], image_hw[0] / photo_hw[0])  # (w, h), mmdet's scale_factor
    inverse = [1 / s for s in scale]
    size = [math.ceil(height * inverse[0]), math.ceil(width * inverse[1])]
    expected = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[..., : photo_hw[0], : photo_hw[1]]
    expected = (expected.sigmoid() > 0.5)[0].numpy()

    prepared = Prepared(np.zeros((1, 3, *input_hw), np.float32), photo_hw, image_hw, scale, input_hw)
    settings = answers.AnswerSettings(classes=(), score_threshold=0.0, max_detections=100, top_k=5, per_box_masks=False)
    got = answers._masks(logits.sigmoid()[0].numpy(), np.zeros((3, 4)), prepared, settings)
    assert got.shape == (3, *photo_hw)
    for ours, theirs in zip(got, expected, strict=True):
        assert np.count_nonzero(ours != theirs) <= 1e-4 * theirs.size  # float32 rounding at the crossing


def test_whole_input_masks_are_resized_as_mmdets_solo_heads_resize_them():
    """mmdet's SOLOv2Head (and SOLOHead): the mask probabilities at the input's size, cut to the
    transformed image, resized to the photo, > mask_thr."""
    import torch
    import torch.nn.functional as F

    from edge_deploy.runtime.preprocess import Prepared

    rng = np.random.default_rng(7)
    photo_hw, image_hw, input_hw = (427, 640), (534, 800), (544, 800)  # padded to 32 by the preprocessor
    coarse = torch.from_numpy(rng.normal(-1.0, 4.0, (3, input_hw[0] // 4, input_hw[1] // 4)).astype(np.float32))
    probabilities = F.interpolate(coarse[None].sigmoid(), size=input_hw, mode="bilinear")  # the export's
    cut = probabilities[:, :, : image_hw[0], : image_hw[1]]
    expected = (F.interpolate(cut, size=photo_hw, mode="bilinear", align_corners=False) > 0.5)[0].numpy()

    scale = (image_hw[1] / photo_hw[1], image_hw[0] / photo_hw[0])
    prepared = Prepared(np.zeros((1, 3, *input_hw), np.float32), photo_hw, image_hw, scale, input_hw)
    settings = answers.AnswerSettings(
        classes=(), score_threshold=0.0, max_detections=100, top_k=5, per_box_masks=False, mask_resize="image"
    )
    got = answers._masks(probabilities[0].numpy(), np.zeros((3, 4)), prepared, settings)
    for ours, theirs in zip(got, expected, strict=True):
        assert np.count_nonzero(ours != theirs) <= 1e-4 * theirs.size


def test_segmentation_answers_are_mmsegs_postprocess():
    """mmseg's EncoderDecoder.postprocess_result: the logits cut to the image (padding off), resized
    bilinearly to the photo, then the argmax over classes."""
    import base64
    import io

    import torch
    import torch.nn.functional as F
    from PIL import Image

    from edge_deploy.runtime.preprocess import Prepared

    rng, classes = np.random.default_rng(8), 19
    photo_hw, image_hw, input_hw = (427, 640), (342, 512), (352, 512)  # padded to 32 by the preprocessor
    coarse = torch.from_numpy(rng.normal(0.0, 3.0, (classes, input_hw[0] // 8, input_hw[1] // 8)).astype(np.float32))
    logits = F.interpolate(coarse[None], size=input_hw, mode="bilinear")  # the export's output
    resized = F.interpolate(logits[:, :, : image_hw[0], : image_hw[1]], size=photo_hw, mode="bilinear")[0]
    expected = resized.argmax(dim=0).numpy()

    scale = (image_hw[1] / photo_hw[1], image_hw[0] / photo_hw[0])
    prepared = Prepared(np.zeros((1, 3, *input_hw), np.float32), photo_hw, image_hw, scale, input_hw)
    names = tuple(f"class {i}" for i in range(classes))
    settings = answers.AnswerSettings(
        classes=names, score_threshold=0.0, max_detections=100, top_k=5, per_box_masks=False
    )
    answer = answers.segmentation({"output": logits.numpy()}, prepared, settings)
    png = base64.b64decode(answer["segmentation"]["label_map"])
    got = np.asarray(Image.open(io.BytesIO(png)))
    assert got.shape == photo_hw and len(np.unique(expected)) == classes
    assert np.count_nonzero(got != expected) <= 1e-4 * expected.size  # float32 near-ties only
    shares = {entry["name"]: entry for entry in answer["classes"]}
    assert set(shares) == {names[int(label)] for label in np.unique(expected)}


def test_coco_rle_is_what_pycocotools_encodes():
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(5)
    for shape in [(427, 640), (1, 1), (5, 3), (64, 64)]:
        for density in (0.0, 0.02, 0.5, 1.0):
            mask = rng.random(shape) < density
            ours = answers.coco_rle(mask)
            theirs = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
            assert ours == {"size": list(theirs["size"]), "counts": theirs["counts"].decode()}
            np.testing.assert_array_equal(coco_mask.decode({**ours, "counts": ours["counts"].encode()}), mask)
