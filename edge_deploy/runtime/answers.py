"""The model's outputs as the task's answer, in the photo's own pixels, with class names.

Each builder mirrors what MMDeploy's Python wrapper of the same ONNX model does to give the
OpenMMLab codebase's answer (mmdeploy/codebase/*/deploy/*_model.py):
- classification: scores per class -> the top k;
- detection: `dets` [1, K, 5] (x1, y1, x2, y2, score) and `labels` [1, K], in the model input's
  pixels -> clipped to the transformed image and divided by the resize's scale factor, as mmdet does;
- instance segmentation: also `masks` [1, K, h, w], either whole-input masks (RTMDet-Ins, CondInst:
  resized bilinearly as logits and cut to the photo; SOLO: cut to the image and resized to the
  photo; each as its mmdet head does in PyTorch) or per-box masks (Mask R-CNN; pasted into the box
  as mmdeploy's grid_sample does), thresholded, as COCO RLE;
- semantic segmentation: per-class logits (or a label map) at the input's size -> the padding cut
  off, resized to the photo (logits bilinearly, then the argmax; labels with nearest), as a PNG.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_deploy.runtime import resize
from edge_deploy.runtime.preprocess import Prepared

PROBABILITY_FLOOR = np.float32(1e-7)  # 1 - 1e-7 is still below 1 in float32


@dataclass(frozen=True)
class AnswerSettings:
    classes: tuple[str, ...]
    score_threshold: float  # the model config's test_cfg score_thr (0.0 when it has none)
    max_detections: int  # test_cfg max_per_img
    top_k: int
    per_box_masks: bool  # Mask R-CNN style masks (pasted into boxes) rather than whole-input ones
    # whole-input masks: "input" (the input's logits resized, RTMDet-Ins and CondInst) or "image"
    # (the probabilities within the transformed image resized to the photo, SOLO and SOLOv2)
    mask_resize: str = "input"
    mask_threshold: float = 0.5
    align_corners: bool = False


def class_name(classes: Sequence[str], label: int) -> str:
    return classes[label] if 0 <= label < len(classes) else str(label)


def classification(outputs: Mapping[str, np.ndarray], settings: AnswerSettings, top_k: int | None) -> dict[str, Any]:
    scores = np.asarray(next(iter(outputs.values())), dtype=np.float64).reshape(-1)
    k = min(top_k or settings.top_k, scores.size)
    order = np.argsort(-scores, kind="stable")[:k]
    return {
        "classes": [
            {"label": int(i), "name": class_name(settings.classes, int(i)), "score": _finite(scores[i])} for i in order
        ]
    }


def detection(
    outputs: Mapping[str, np.ndarray],
    prepared: Prepared,
    settings: AnswerSettings,
    score_threshold: float | None,
    max_detections: int | None,
    with_masks: bool,
) -> dict[str, Any]:
    dets, labels = outputs["dets"][0], outputs["labels"][0]
    threshold = settings.score_threshold if score_threshold is None else score_threshold
    keep = np.flatnonzero((dets[:, 4] > 0) & (dets[:, 4] >= threshold))
    keep = keep[np.argsort(-dets[keep, 4], kind="stable")][: max_detections or settings.max_detections]
    w_scale, h_scale = prepared.scale_factor
    # clipped as mmdet clips (to the transformed image, before rescaling): a letterboxed image's
    # extent reaches past the photo's edge, so a box may too (a trained model rarely puts one there)
    img_h, img_w = prepared.image_hw
    boxes = dets[keep, :4].astype(np.float64)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, img_w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, img_h)
    boxes /= np.array([w_scale, h_scale, w_scale, h_scale])
    masks = _masks(outputs["masks"][0][keep], boxes, prepared, settings) if with_masks else None
    found = []
    for row, index in enumerate(keep):
        label = int(labels[index])
        found.append(
            {
                "box": [round(float(v), 2) for v in boxes[row]],
                "score": _finite(dets[index, 4]),
                "label": label,
                "name": class_name(settings.classes, label),
            }
        )
        if masks is not None:
            found[-1]["mask"] = coco_rle(masks[row])
    return {"detections": found}


def _masks(raw: np.ndarray, boxes: np.ndarray, prepared: Prepared, settings: AnswerSettings) -> np.ndarray:
    height, width = prepared.original_hw
    result = np.zeros((len(raw), height, width), dtype=bool)
    if settings.per_box_masks:
        for row, (mask, box) in enumerate(zip(raw, boxes, strict=True)):
            _paste_in_box(mask.astype(np.float32), box, result[row], settings.mask_threshold)
        return result
    if settings.mask_resize == "image":
        # SOLO and SOLOv2, as their mmdet heads do: the probabilities within the transformed image,
        # resized to the photo, then > threshold
        img_h, img_w = prepared.image_hw
        for row, mask in enumerate(raw):
            within = np.asarray(mask[:img_h, :img_w], dtype=np.float32)
            result[row] = resize.bilinear_float(within, width, height) > settings.mask_threshold
        return result
    # RTMDet-Ins and CondInst, as their mmdet heads do: the mask logits of the whole input (padding
    # included) resized by the inverse scale (mmdet pairs the height with the width's factor), cut
    # to the photo, then sigmoid > threshold. The export gives sigmoid(logits): they are taken back
    # to logits first, since resizing probabilities moves the threshold's crossing.
    w_scale, h_scale = prepared.scale_factor
    cut = _logit(np.float32(settings.mask_threshold))
    for row, mask in enumerate(raw):
        logits = _logit(np.asarray(mask, dtype=np.float32))
        size = (math.ceil(logits.shape[1] / h_scale), math.ceil(logits.shape[0] / w_scale))
        resized = resize.bilinear_float(logits, *size)[:height, :width]
        result[row, : resized.shape[0], : resized.shape[1]] = resized > cut
    return result


def _logit(probability: np.ndarray) -> np.ndarray:
    """The inverse of the sigmoid, finite where float32's sigmoid saturated to 0 or 1."""
    p = np.clip(probability, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return np.log(p) - np.log1p(-p)


def _paste_in_box(mask: np.ndarray, box: np.ndarray, into: np.ndarray, threshold: float) -> None:
    """A per-box mask resampled into the photo as mmdeploy pastes it (grid_sample, bilinear, zeros
    outside), computed only around the box: elsewhere it is zero anyway."""
    height, width = into.shape
    x0, y0, x1, y1 = (float(v) for v in box)
    left, top = max(0, math.floor(x0) - 1), max(0, math.floor(y0) - 1)
    right, bottom = min(width, math.ceil(x1) + 1), min(height, math.ceil(y1) + 1)
    if right <= left or bottom <= top or x1 <= x0 or y1 <= y0:
        return
    mask_h, mask_w = mask.shape
    xs = ((np.arange(left, right, dtype=np.float32) + 0.5 - x0) / (x1 - x0)) * mask_w - 0.5
    ys = ((np.arange(top, bottom, dtype=np.float32) + 0.5 - y0) / (y1 - y0)) * mask_h - 0.5
    into[top:bottom, left:right] = resize.sample_bilinear(mask, xs, ys) >= threshold


def segmentation(outputs: Mapping[str, np.ndarray], prepared: Prepared, settings: AnswerSettings) -> dict[str, Any]:
    output = next(iter(outputs.values()))[0]  # [1, H, W] labels or [C, H, W] logits
    img_h, img_w = prepared.image_hw
    height, width = prepared.original_hw
    if output.dtype.kind == "f":
        logits = output[:, :img_h, :img_w].transpose(1, 2, 0)
        labels = resize.bilinear_argmax(logits, width, height, settings.align_corners)
    else:  # the class map; also every binary (one-channel) head's, which MMDeploy thresholds in the graph
        labels = resize.nearest(output[0, :img_h, :img_w], width, height)
    return {
        "segmentation": {"format": "png", "width": width, "height": height, "label_map": label_map_png(labels)},
        "classes": class_shares(labels, settings.classes),
    }


def label_map_png(labels: np.ndarray) -> str:
    """A label map as a base64 PNG: 8-bit greyscale, or 16-bit when a label is above 255."""
    from PIL import Image

    wide = labels.max(initial=0) > 255
    image = Image.fromarray(labels.astype(np.uint16 if wide else np.uint8), mode="I;16" if wide else "L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def class_shares(labels: np.ndarray, classes: Sequence[str]) -> list[dict[str, Any]]:
    present, counts = np.unique(labels, return_counts=True)
    return [
        {"label": int(label), "name": class_name(classes, int(label)), "share": round(int(count) / labels.size, 6)}
        for label, count in zip(present, counts, strict=True)
    ]


def coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """A binary mask as COCO's compressed RLE ({"size": [h, w], "counts": str}), as pycocotools writes it."""
    flat = mask.reshape(-1, order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate(([0], changes, [flat.size])))
    if flat.size and flat[0]:
        counts = np.concatenate(([0], counts))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _rle_string(counts.tolist())}


def _rle_string(counts: list[int]) -> str:
    out = bytearray()
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if c & 0x10 else (x != 0)
            if more:
                c |= 0x20
            out.append(c + 48)
    return out.decode("ascii")


def decode_coco_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """The binary mask of a compressed COCO RLE (the inverse of `coco_rle`, as pycocotools reads it)."""
    height, width = (int(v) for v in rle["size"])
    text, counts, at = str(rle["counts"]), [], 0
    while at < len(text):
        value, shift, more = 0, 0, True
        while more:
            c = ord(text[at]) - 48
            value |= (c & 0x1F) << shift
            more, at, shift = bool(c & 0x20), at + 1, shift + 5
            if not more and c & 0x10:
                value |= -1 << shift
        counts.append(value + counts[-2] if len(counts) > 2 else value)
    if sum(counts) != height * width or any(count < 0 for count in counts):
        raise ValueError(f"an RLE of {sum(counts)} pixels for a {height}x{width} mask")
    flat = np.repeat(np.arange(len(counts)) % 2, counts).astype(bool)
    return flat.reshape((width, height)).T


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
