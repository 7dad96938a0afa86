"""Answers compared with the PyTorch reference's, per task, without a device: what passes and what fails."""

import numpy as np

from edge_deploy.acceptance.compare import compare_answer
from edge_deploy.acceptance.reference import PhotoAnswer
from edge_deploy.runtime.answers import coco_rle, decode_coco_rle, label_map_png

IMAGE = {"width": 40, "height": 30}


def photo(answer: dict) -> PhotoAnswer:
    return PhotoAnswer("p.jpg", "0" * 64, 40, 30, answer)


def classes(*pairs):
    return [{"label": label, "score": score} for label, score in pairs]


def test_classification_needs_the_same_top1_and_top5_set_and_excuses_a_tie_at_the_cut():
    reference = photo({"classes": classes((3, 0.5), (1, 0.2), (2, 0.1), (7, 0.05), (9, 0.04), (4, 0.04))})
    same = {"image": IMAGE, "classes": classes((3, 0.50001), (1, 0.2), (2, 0.1), (7, 0.05), (9, 0.04))}
    assert compare_answer("classification", reference, same).passed
    # class 4 tied with the fifth (9) may stand in for it
    swapped = {"image": IMAGE, "classes": classes((3, 0.5), (1, 0.2), (2, 0.1), (7, 0.05), (4, 0.04))}
    assert compare_answer("classification", reference, swapped).passed
    other_top1 = {"image": IMAGE, "classes": classes((1, 0.5), (3, 0.2), (2, 0.1), (7, 0.05), (9, 0.04))}
    failed = compare_answer("classification", reference, other_top1)
    assert not failed.passed and "top-1 is class 1, PyTorch's is 3" in failed.detail
    stranger = {"image": IMAGE, "classes": classes((3, 0.5), (1, 0.2), (2, 0.1), (7, 0.05), (11, 0.04))}
    assert "top-5 holds [11]" in compare_answer("classification", reference, stranger).detail
    drifted = {"image": IMAGE, "classes": classes((3, 0.45), (1, 0.2), (2, 0.1), (7, 0.05), (9, 0.04))}
    assert "top-1 score 0.450000" in compare_answer("classification", reference, drifted).detail


def test_a_device_that_saw_another_image_size_fails_whatever_it_answered():
    reference = photo({"classes": classes((3, 0.5))})
    answer = {"image": {"width": 30, "height": 40}, "classes": classes((3, 0.5))}
    assert "saw a 30x40 photo" in compare_answer("classification", reference, answer).detail


def box(x1, y1, x2, y2, label, score, tied=False, mask=None):
    found = {"box": [x1, y1, x2, y2], "label": label, "score": score, "tied": tied}
    if mask is not None:
        found["mask"] = coco_rle(mask)
    return found


def test_detections_match_by_label_and_iou_and_tied_or_weak_ones_are_left_out():
    reference = photo(
        {
            "detections": [
                box(0, 0, 10, 10, 1, 0.9),
                box(20, 5, 30, 25, 2, 0.6),
                box(5, 5, 15, 15, 3, 0.4, tied=True),  # NMS may keep its twin instead
                box(1, 1, 4, 4, 4, 0.1),  # below the threshold
            ]
        }
    )
    device = {"image": IMAGE, "detections": [box(20, 5, 30, 25.2, 2, 0.6), box(0, 0, 10, 10, 1, 0.9)]}
    agreement = compare_answer("detection", reference, device)
    assert agreement.passed and agreement.compared == 2 and agreement.metrics["tied_left_out"] == 1
    shifted = {"image": IMAGE, "detections": [box(0, 0, 10, 10, 1, 0.9), box(22, 5, 32, 25, 2, 0.6)]}
    failed = compare_answer("detection", reference, shifted)
    assert not failed.passed and "class 2" in failed.detail and "IoU >= 0.95" in failed.detail
    relabelled = {"image": IMAGE, "detections": [box(0, 0, 10, 10, 5, 0.9), box(20, 5, 30, 25, 2, 0.6)]}
    assert not compare_answer("detection", reference, relabelled).passed


def test_instance_masks_must_overlap_their_reference():
    mask = np.zeros((30, 40), bool)
    mask[2:12, 3:13] = True
    reference = photo({"detections": [box(3, 2, 13, 12, 1, 0.9, mask=mask)]})
    assert compare_answer(
        "instance-segmentation", reference, {"image": IMAGE, "detections": [box(3, 2, 13, 12, 1, 0.9, mask=mask)]}
    ).passed
    half = mask.copy()
    half[2:7] = False
    failed = compare_answer(
        "instance-segmentation", reference, {"image": IMAGE, "detections": [box(3, 2, 13, 12, 1, 0.9, mask=half)]}
    )
    assert not failed.passed and "IoU 0.500 < 0.9" in failed.detail


def test_segmentation_needs_99_percent_of_pixels():
    labels = np.zeros((30, 40), np.uint8)
    labels[:, 20:] = 7
    reference = photo({"segmentation": {"label_map": label_map_png(labels)}})
    nearly = labels.copy()
    nearly[0, :10] = 7  # 10 of 1200 pixels
    assert compare_answer(
        "segmentation", reference, {"image": IMAGE, "segmentation": {"label_map": label_map_png(nearly)}}
    ).passed
    off = labels.copy()
    off[:2] = 3  # 80 of 1200
    failed = compare_answer(
        "segmentation", reference, {"image": IMAGE, "segmentation": {"label_map": label_map_png(off)}}
    )
    assert not failed.passed and "93.33% of pixels agree" in failed.detail


def test_coco_rle_decodes_what_pycocotools_encodes_and_what_the_runtime_writes():
    from pycocotools import mask as coco

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (64, 48), (100, 3)]:
        for share in (0.0, 0.1, 0.5, 1.0):
            mask = rng.random(shape) < share
            assert (decode_coco_rle(coco_rle(mask)) == mask).all()
            theirs = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
            assert (decode_coco_rle({"size": theirs["size"], "counts": theirs["counts"].decode()}) == mask).all()
