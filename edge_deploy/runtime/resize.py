"""Image resampling in numpy, matching what OpenMMLab's pipelines do with OpenCV and torch.

The runtime ships no OpenCV (its wheel would add ~150 MB to every image: 81 MB of bundled video
and BLAS libraries beside a 72 MB module); these few functions are what the runtime needs of it:

- `bilinear_uint8`: `cv2.resize(..., INTER_LINEAR)` on uint8 frames, the resize of mmcv's
  `Resize`/`ResizeEdge`. OpenCV computes it in fixed point (11-bit weights, rounded per tap), and
  so does this, with the rounding of OpenCV's vectorised vertical pass. Identical to OpenCV 5.0
  except in the rows an upscale clamps at the top and bottom edge, where OpenCV rounds otherwise
  and a pixel can be 1 level off (0.12 % of all pixels over 300 random sizes; tests/runtime).
- `pillow`: mmcv's resize with `backend="pillow"` (most of mmpretrain's configs ask for it): Pillow's
  own `Image.resize` with the named filter, as mmcv calls it. Pillow is in the runtime already, for
  decoding photos.
- `bilinear_float`: torch's `interpolate(mode="bilinear", align_corners=False|True)` on float maps
  (instance masks); `bilinear_argmax` is the same resize of per-class logits followed by the argmax
  over classes, in bands of rows, so a large photo never holds classes x height x width floats.
- `nearest`: torch's legacy `interpolate(mode="nearest")` (label maps).
- `sample_bilinear`: torch's `grid_sample(bilinear, zeros, align_corners=False)` of one small
  mask at given pixel coordinates (pasting a Mask R-CNN mask into its box).
"""

from __future__ import annotations

import numpy as np

COEF_BITS = 11
COEF_SCALE = 1 << COEF_BITS


def _taps_fixed(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR taps along one axis: first index, the two 11-bit weights, and where
    the position fell outside the source and was clamped to its edge."""
    scale = 1.0 / (target / source)  # as OpenCV derives it (1 / inv_scale), which can differ in the last bit
    position = ((np.arange(target, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    first = np.floor(position).astype(np.int64)
    fraction = position - first.astype(np.float32)
    below = first < 0
    first[below], fraction[below] = 0, 0
    beyond = first >= source - 1
    first[beyond], fraction[beyond] = source - 1, 0
    # each weight rounded on its own (cv::saturate_cast<short>: round half to even)
    weight1 = np.rint(fraction.astype(np.float32) * COEF_SCALE).astype(np.int32)
    weight0 = np.rint((np.float32(1) - fraction) * COEF_SCALE).astype(np.int32)
    return first, weight0, weight1, below | beyond


def bilinear_uint8(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)` for an HxW[xC] uint8 image."""
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) == (height, width):
        return image.copy()
    x0, xw0, xw1, _ = _taps_fixed(src_w, width)
    y0, yw0, yw1, _ = _taps_fixed(src_h, height)
    x1 = np.minimum(x0 + 1, src_w - 1)
    channels = image.shape[2:]
    # horizontal pass on the rows the vertical pass needs, in int32 (value * 2048)
    rows = np.union1d(y0, np.minimum(y0 + 1, src_h - 1))
    picked = image[rows].astype(np.int32)
    expand = (slice(None),) + (None,) * len(channels)
    horizontal = picked[:, x0] * xw0[expand] + picked[:, x1] * xw1[expand]
    lookup = np.searchsorted(rows, y0)
    top = horizontal[lookup] >> 4
    bottom = horizontal[np.searchsorted(rows, np.minimum(y0 + 1, src_h - 1))] >> 4
    column = (slice(None), None) + (None,) * len(channels)
    # OpenCV's vectorised vertical pass: 16-bit high products, then (sum + 2) >> 2
    mixed = ((top * yw0[column]) >> 16) + ((bottom * yw1[column]) >> 16)
    return np.clip((mixed + 2) >> 2, 0, 255).astype(np.uint8)


# mmcv's `pillow_interp_codes`: interpolation name -> Pillow filter name
PILLOW_FILTERS = {
    "nearest": "NEAREST",
    "bilinear": "BILINEAR",
    "bicubic": "BICUBIC",
    "box": "BOX",
    "lanczos": "LANCZOS",
    "hamming": "HAMMING",
}


def pillow(image: np.ndarray, width: int, height: int, method: str = "bilinear") -> np.ndarray:
    """`mmcv.imresize(image, (width, height), interpolation=method, backend="pillow")` for a uint8 image.
    Pillow filters each channel alike, so a BGR frame resizes as its RGB twin would."""
    from PIL import Image  # imported on the first photo, not at start-up

    resample = getattr(Image.Resampling, PILLOW_FILTERS[method])
    return np.asarray(Image.fromarray(image).resize((width, height), resample))


def _taps_float(source: int, target: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if align_corners:
        scale = (source - 1) / (target - 1) if target > 1 else 0.0
        position = np.arange(target, dtype=np.float32) * np.float32(scale)
    else:
        scale = source / target
        position = np.maximum((np.arange(target, dtype=np.float32) + 0.5) * np.float32(scale) - 0.5, 0)
    first = np.minimum(np.floor(position).astype(np.int64), source - 1)
    second = np.minimum(first + 1, source - 1)
    fraction = (position - first).astype(np.float32)
    return first, second, fraction


def bilinear_float(values: np.ndarray, width: int, height: int, align_corners: bool = False) -> np.ndarray:
    """torch's bilinear interpolate of an HxW[xC] float map to (height, width)."""
    taps = _taps_float(values.shape[1], width, align_corners), _taps_float(values.shape[0], height, align_corners)
    return _bilinear_rows(values, *taps, slice(None)).astype(np.float32)


def bilinear_argmax(
    logits: np.ndarray, width: int, height: int, align_corners: bool = False, band_bytes: int = 8 << 20
) -> np.ndarray:
    """`bilinear_float(logits, width, height).argmax(axis=2)` of an HxWxC logit map, computed in bands
    of output rows of about `band_bytes` of floats each (torch's argmax and numpy's both take the
    first of equal maxima)."""
    src_h, src_w, classes = logits.shape
    taps = _taps_float(src_w, width, align_corners), _taps_float(src_h, height, align_corners)
    labels = np.empty((height, width), dtype=np.int64)
    band = max(1, band_bytes // (4 * width * classes))
    for start in range(0, height, band):
        rows = slice(start, start + band)
        labels[rows] = _bilinear_rows(logits, *taps, rows).argmax(axis=2)
    return labels


def _bilinear_rows(values: np.ndarray, x_taps: tuple, y_taps: tuple, rows: slice) -> np.ndarray:
    """Output `rows` of the bilinear resize given by the taps: vertical pass, then horizontal."""
    (x0, x1, fx), (y0, y1, fy) = x_taps, y_taps
    extra = (None,) * (values.ndim - 2)
    fx = fx[(slice(None), *extra)]
    fy = fy[rows][(slice(None), None, *extra)]
    vertical = values[y0[rows]] * (1 - fy) + values[y1[rows]] * fy
    return vertical[:, x0] * (1 - fx) + vertical[:, x1] * fx


def nearest(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """torch's legacy nearest interpolate (source index = floor(destination index * scale))."""
    src_h, src_w = values.shape[:2]
    ys = np.minimum(np.floor(np.arange(height, dtype=np.float32) * np.float32(src_h / height)), src_h - 1)
    xs = np.minimum(np.floor(np.arange(width, dtype=np.float32) * np.float32(src_w / width)), src_w - 1)
    return values[ys.astype(np.int64)][:, xs.astype(np.int64)]


def sample_bilinear(mask: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """`mask` (h x w) sampled at pixel coordinates xs (columns) x ys (rows), zeros outside: grid_sample's
    bilinear with zero padding, as a (len(ys), len(xs)) array."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.float32)
    padded[1:-1, 1:-1] = mask
    x = np.clip(xs, -1, w) + 1  # beyond one pixel outside, every tap is zero padding anyway
    y = np.clip(ys, -1, h) + 1
    x0 = np.clip(np.floor(x).astype(np.int64), 0, w + 1)
    y0 = np.clip(np.floor(y).astype(np.int64), 0, h + 1)
    x1, y1 = np.minimum(x0 + 1, w + 1), np.minimum(y0 + 1, h + 1)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)[:, None]
    top = padded[y0][:, x0] * (1 - fx) + padded[y0][:, x1] * fx
    bottom = padded[y1][:, x0] * (1 - fx) + padded[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy
