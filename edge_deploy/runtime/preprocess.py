"""A photo to the model's input tensor, by the model's own recorded test pipeline.

The conversion records the model config's test pipeline and data preprocessor (`serving.json`);
this replays them in numpy the way OpenMMLab does with OpenCV or Pillow before PyTorch (mmcv's
`Resize` and `Pad`, mmpretrain's `ResizeEdge`, mmcv's `CenterCrop`, then the data preprocessor's
channel order, mean/std and batch padding), so the tensor is the one PyTorch saw for the same
photo. What the answer needs to go back to the photo's pixels (scale factor, the shape before
padding) comes along in `Prepared`. A transform this module does not know, or a parameter of one
that it does not read (a resize `backend`, say), is refused when the model is loaded, never
guessed at or ignored: the conversion then records the model as unservable, saying why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_deploy.runtime import resize

# transforms that load or pack data: nothing to do on a frame that is already decoded
PASSTHROUGH = {
    "LoadImageFromFile",
    "LoadImageFromNDArray",
    "InferencerLoader",
    "LoadAnnotations",
    "PackDetInputs",
    "PackClsInputs",
    "PackSegInputs",
    "PackInputs",
    "Collect",
    "ImageToTensor",
    "DefaultFormatBundle",
}


class PipelineError(ValueError):
    """The recorded pipeline cannot be replayed (an unknown transform, a malformed parameter)."""


@dataclass
class Prepared:
    tensor: np.ndarray  # 1x3xHxW float32, ready for the model
    original_hw: tuple[int, int]  # the photo
    image_hw: tuple[int, int]  # after the transforms (mmcv's img_shape: padding by `Pad` included)
    scale_factor: tuple[float, float]  # (w, h) of the last resize
    padded_hw: tuple[int, int]  # after the data preprocessor's batch padding


# mmcv's interpolation names with its default backend (OpenCV), as far as numpy replays them exactly
OPENCV_METHODS = {"bilinear": resize.bilinear_uint8, "nearest": resize.nearest}
# the parameters each transform reads (a pipeline's "type" aside); any other is refused
PARAMETERS = {
    "Resize": {"scale", "scale_factor", "keep_ratio", "interpolation", "backend", "clip_object_border"},
    "ResizeEdge": {"scale", "edge", "interpolation", "backend"},
    "CenterCrop": {"crop_size", "auto_pad", "auto_pad_cfg", "clip_object_border"},
    "Pad": {"size", "size_divisor", "pad_to_square", "pad_val", "padding_mode"},
}


def _resampler(kind: str, params: Mapping[str, Any]) -> Callable[[np.ndarray, int, int], np.ndarray]:
    """The resize a transform's `backend` ("cv2", mmcv's default, or "pillow") and `interpolation` ask for."""
    backend, name = params.get("backend") or "cv2", params.get("interpolation", "bilinear")
    if backend == "pillow":
        if name not in resize.PILLOW_FILTERS:
            supported = ", ".join(resize.PILLOW_FILTERS)
            raise PipelineError(f"{kind}: interpolation {name!r} with backend 'pillow' is not supported ({supported})")
        return lambda image, width, height: resize.pillow(image, width, height, name)
    if backend != "cv2":
        raise PipelineError(f"{kind}: resize backend {backend!r} is not supported (supported: cv2, pillow)")
    if name not in OPENCV_METHODS:
        raise PipelineError(
            f"{kind}: interpolation {name!r} with backend 'cv2' is not supported (supported: "
            f"{', '.join(OPENCV_METHODS)}; with backend 'pillow': {', '.join(resize.PILLOW_FILTERS)})"
        )
    return OPENCV_METHODS[name]


def _check_parameters(kind: str, params: Mapping[str, Any]) -> None:
    unknown = sorted(set(params) - PARAMETERS[kind] - {"type"})
    if unknown:
        raise PipelineError(
            f"{kind}: parameter(s) {', '.join(unknown)} not supported (this runtime reads "
            f"{', '.join(sorted(PARAMETERS[kind]))})"
        )


@dataclass
class _State:
    image: np.ndarray
    scale_factor: tuple[float, float] = (1.0, 1.0)


def _resize_to(state: _State, width: int, height: int, interpolation: Callable) -> None:
    h, w = state.image.shape[:2]
    state.image = interpolation(state.image, width, height)
    state.scale_factor = (width / w, height / h)


def _resize(params: Mapping[str, Any]) -> Callable[[_State], None]:
    """mmcv's Resize (also mmdet's and mmseg's): to `scale` (w, h), or within it with `keep_ratio`."""
    scale = params.get("scale")
    if isinstance(scale, int):
        scale = (scale, scale)
    if not (isinstance(scale, Sequence) and len(scale) == 2 and all(isinstance(s, int) and s > 0 for s in scale)):
        raise PipelineError(
            f"Resize needs scale (width, height), got {scale!r} (scale_factor-only resizes are not supported)"
        )
    if params.get("scale_factor") is not None:
        raise PipelineError(f"Resize with both scale and scale_factor ({params['scale_factor']!r}) is not supported")
    keep_ratio = bool(params.get("keep_ratio", False))
    interpolation = _resampler("Resize", params)

    def apply(state: _State) -> None:
        h, w = state.image.shape[:2]
        if not keep_ratio:
            _resize_to(state, scale[0], scale[1], interpolation)
            return
        # mmcv.rescale_size: as large as fits, long edge within max(scale), short within min(scale)
        factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
        _resize_to(state, int(w * factor + 0.5), int(h * factor + 0.5), interpolation)

    return apply


def _resize_edge(params: Mapping[str, Any]) -> Callable[[_State], None]:
    """mmpretrain's ResizeEdge: one edge ('short', 'long', 'width' or 'height') to `scale`."""
    scale, edge = params.get("scale"), params.get("edge", "short")
    if not isinstance(scale, int) or scale <= 0 or edge not in ("short", "long", "width", "height"):
        raise PipelineError(f"ResizeEdge needs an integer scale and edge short/long/width/height, got {dict(params)}")
    interpolation = _resampler("ResizeEdge", params)

    def apply(state: _State) -> None:
        h, w = state.image.shape[:2]
        if (edge == "short" and w < h) or (edge == "long" and w > h) or edge == "width":
            _resize_to(state, scale, int(scale * h / w), interpolation)
        else:
            _resize_to(state, int(scale * w / h), scale, interpolation)

    return apply


def _center_crop(params: Mapping[str, Any]) -> Callable[[_State], None]:
    """mmcv's CenterCrop (without auto_pad: a smaller image is kept whole on that side)."""
    size = params.get("crop_size")
    crop_w, crop_h = (size, size) if isinstance(size, int) else tuple(size or ())
    if params.get("auto_pad"):
        raise PipelineError("CenterCrop with auto_pad is not supported")

    def apply(state: _State) -> None:
        h, w = state.image.shape[:2]
        ch, cw = min(crop_h, h), min(crop_w, w)
        y1 = max(0, round((h - ch) / 2.0))  # Python's round, as mmcv's (half to even)
        x1 = max(0, round((w - cw) / 2.0))
        state.image = state.image[y1 : min(h, y1 + ch), x1 : min(w, x1 + cw)]

    return apply


def _pad(params: Mapping[str, Any]) -> Callable[[_State], None]:
    """mmcv's Pad (also mmdet's): to a fixed `size` (w, h), a `size_divisor` or a square; bottom and right."""
    size, divisor, square = params.get("size"), params.get("size_divisor"), bool(params.get("pad_to_square"))
    pad_val = params.get("pad_val", 0)
    if isinstance(pad_val, Mapping):
        pad_val = pad_val.get("img", 0)
    if params.get("padding_mode", "constant") != "constant":
        raise PipelineError(f"Pad with padding_mode {params.get('padding_mode')!r} is not supported")
    if size is None and divisor is None and not square:
        raise PipelineError("Pad needs size, size_divisor or pad_to_square")
    value = [float(v) for v in pad_val] if isinstance(pad_val, Sequence) else [float(pad_val)] * 3

    def apply(state: _State) -> None:
        h, w = state.image.shape[:2]
        target_h, target_w = (max(h, w), max(h, w)) if square else (h, w)
        if divisor:
            target_h, target_w = math.ceil(target_h / divisor) * divisor, math.ceil(target_w / divisor) * divisor
        elif size is not None and not square:
            target_w, target_h = (size, size) if isinstance(size, int) else size
        state.image = _pad_bottom_right(state.image, target_h, target_w, value)

    return apply


def _pad_bottom_right(image: np.ndarray, height: int, width: int, value: Sequence[float]) -> np.ndarray:
    h, w = image.shape[:2]
    if h >= height and w >= width:
        return image
    padded = np.empty((max(h, height), max(w, width), *image.shape[2:]), dtype=image.dtype)
    padded[...] = np.asarray(value, dtype=image.dtype) if image.ndim == 3 else value[0]
    padded[:h, :w] = image
    return padded


TRANSFORMS: dict[str, Callable[[Mapping[str, Any]], Callable[[_State], None]]] = {
    "Resize": _resize,
    "ResizeEdge": _resize_edge,
    "CenterCrop": _center_crop,
    "Pad": _pad,
}


@dataclass(frozen=True)
class Normalization:
    """The data preprocessor: channel order, mean/std, then padding of the batch (after normalizing)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    to_rgb: bool
    pad_size_divisor: int = 1
    pad_value: float = 0.0
    pad_size: tuple[int, int] | None = None  # (h, w): mmseg's test_cfg size


class Preprocess:
    def __init__(self, transforms: Sequence[Mapping[str, Any]], normalization: Normalization) -> None:
        self.steps = []
        for params in transforms:
            kind = str(params.get("type", "")).split(".")[-1]  # "mmdet.Resize" -> "Resize"
            if kind in PASSTHROUGH:
                continue
            if kind not in TRANSFORMS:
                known = ", ".join(sorted(TRANSFORMS))
                raise PipelineError(f"the test pipeline's transform {kind!r} is not supported (supported: {known})")
            _check_parameters(kind, params)
            self.steps.append(TRANSFORMS[kind](params))
        self.normalization = normalization
        self._mean = np.asarray(normalization.mean, dtype=np.float32).reshape(3, 1, 1)
        self._std = np.asarray(normalization.std, dtype=np.float32).reshape(3, 1, 1)

    def __call__(self, frame: np.ndarray) -> Prepared:
        state = _State(frame)
        for step in self.steps:
            step(state)
        image_hw = state.image.shape[:2]
        tensor = self._normalize(state.image)
        tensor = self._pad_batch(tensor)
        return Prepared(tensor[None], frame.shape[:2], image_hw, state.scale_factor, tensor.shape[1:])

    def _normalize(self, image: np.ndarray) -> np.ndarray:
        chw = image.transpose(2, 0, 1)
        if self.normalization.to_rgb:
            chw = chw[::-1]
        tensor = chw.astype(np.float32)
        tensor -= self._mean
        tensor /= self._std
        return tensor

    def _pad_batch(self, tensor: np.ndarray) -> np.ndarray:
        norm = self.normalization
        h, w = tensor.shape[1:]
        if norm.pad_size is not None:
            target_h, target_w = norm.pad_size
        else:
            divisor = max(1, norm.pad_size_divisor)
            target_h, target_w = math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor
        if (target_h, target_w) == (h, w):
            return np.ascontiguousarray(tensor)
        padded = np.full((3, max(h, target_h), max(w, target_w)), norm.pad_value, dtype=np.float32)
        padded[:, :h, :w] = tensor
        return padded
