"""Photos in: JPEG, PNG or WebP bytes, or a raw HxWx3 uint8 array (.npy), to a BGR uint8 frame.

The frame is what OpenMMLab's `LoadImageFromFile` makes of the same file (OpenCV's `imdecode` with
IMREAD_COLOR: BGR channel order, EXIF orientation applied, alpha dropped, grey expanded), decoded
here with Pillow (libjpeg-turbo, libpng, libwebp), so the model's recorded pipeline sees the pixels
it saw in PyTorch. The format is told by the bytes, not the Content-Type, and the frame's size is
read from the file's header before anything is decoded: a file that claims a huge frame is refused
for the cost of reading its header.
"""

from __future__ import annotations

import io
import struct

import numpy as np

from edge_deploy.runtime.codecs.numpy_files import read_npy
from edge_deploy.runtime.refusals import BadInput, TooLarge

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
NPY = "application/x-npy"


def decode_frame(body: bytes | memoryview, content_type: str, max_pixels: int) -> np.ndarray:
    """An HxWx3 uint8 BGR frame from an image file's bytes or a raw .npy array (already BGR or RGB as sent)."""
    if content_type == NPY:
        return read_npy(body, "frame", lambda _name, shape, dtype: _check_raw(shape, dtype, max_pixels))
    kind, width, height = image_size(bytes(body[:65536]) if len(body) > 65536 else bytes(body))
    if width * height > max_pixels:
        raise TooLarge(
            f"the {kind} image is {width}x{height}; the limit is {max_pixels} pixels (EDGE_MAX_IMAGE_PIXELS)"
        )
    from PIL import Image, ImageOps  # only photos need Pillow: tensor requests never load it

    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own guard, behind ours
    try:
        with Image.open(io.BytesIO(body)) as opened:
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            rgb = upright.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadInput(f"the {kind} image is corrupt or truncated: {exc}") from None
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])  # BGR, as OpenCV decodes


def _check_raw(shape: tuple[int, ...], dtype: np.dtype, max_pixels: int) -> None:
    if len(shape) != 3 or shape[2] != 3 or dtype != np.uint8:
        raise BadInput(f"a raw frame must be an HxWx3 uint8 array, got shape {list(shape)} of {dtype.name}")
    if shape[0] * shape[1] > max_pixels:
        raise TooLarge(f"the frame is {shape[1]}x{shape[0]}; the limit is {max_pixels} pixels (EDGE_MAX_IMAGE_PIXELS)")
    if 0 in shape:
        raise BadInput(f"the frame is empty: shape {list(shape)}")


def image_size(head: bytes) -> tuple[str, int, int]:
    """(format, width, height) read from a JPEG, PNG or WebP file's first bytes."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return "PNG", width, height
    if head.startswith(b"\xff\xd8"):
        return "JPEG", *_jpeg_size(head)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP", *_webp_size(head)
    raise BadInput("the body is not a JPEG, PNG or WebP image (its first bytes say so)")


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(head: bytes) -> tuple[int, int]:
    at = 2
    while at + 4 <= len(head):
        if head[at] != 0xFF:
            break
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", head[at + 2 : at + 4])
        if marker in _JPEG_SOF and at + 9 <= len(head):
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            if width and height:
                return width, height
            break
        at += 2 + length
    raise BadInput("the JPEG image is corrupt or truncated: no frame size before its data")


def _webp_size(head: bytes) -> tuple[int, int]:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        (bits,) = struct.unpack("<I", head[21:25])
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8X" and len(head) >= 30:
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    raise BadInput("the WebP image is corrupt or truncated: no frame size in its header")
