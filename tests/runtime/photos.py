"""Real photographs for the runtime's task tests, and the OpenMMLab inference APIs' answers on them.

The photos ship in packages the tests install: matplotlib's grace_hopper.jpg and scikit-image's
astronaut, coffee, chelsea and rocket (encoded as JPEG here, as a camera would send them).
"""

from __future__ import annotations

import glob
import io
import shutil
from functools import cache
from pathlib import Path

import numpy as np

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@cache
def photos() -> dict[str, bytes]:
    import matplotlib
    from PIL import Image
    from skimage import data

    found = {"grace_hopper": (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").read_bytes()}
    for name in SKIMAGE_PHOTOS:
        buffer = io.BytesIO()
        Image.fromarray(getattr(data, name)()).save(buffer, format="JPEG", quality=92)
        found[name] = buffer.getvalue()
    return found


def opencv_frame(body: bytes) -> np.ndarray:
    """The photo as OpenMMLab's LoadImageFromFile decodes it (cv2.imdecode, BGR)."""
    import cv2

    return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)


def model_files(model_dir: Path) -> tuple[str, str]:
    config = next(p for p in glob.glob(f"{model_dir}/*.py") if Path(p).name != "deploy_config.py")
    return config, glob.glob(f"{model_dir}/*.pth")[0]


def with_decisive_heads(sample_dir: Path, out_dir: Path) -> Path:
    """A copy of an RTMDet(-Ins) sample whose final classification, box and mask-kernel layers have
    weights of a trained model's scale: the shipped samples' heads keep mmdet's initialisation (std
    0.01, zero box bias), so every box is a sliver with the same score and every mask covers the
    whole photo, and there is nothing to compare."""
    import torch

    shutil.copytree(sample_dir, out_dir)
    checkpoint = Path(model_files(out_dir)[1])
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state = saved["state_dict"]
    generator = torch.Generator().manual_seed(0)
    for key, value in state.items():
        if key.startswith("bbox_head.rtm_cls") and key.endswith("weight"):
            state[key] = torch.randn(value.shape, generator=generator) * 3.0
        elif key.startswith("bbox_head.rtm_reg") and key.endswith("weight"):
            state[key] = torch.randn(value.shape, generator=generator) * 0.2
        elif key.startswith("bbox_head.rtm_reg") and key.endswith("bias"):
            state[key] = torch.full(value.shape, 1.0)  # boxes about one stride from their prior
        elif key.startswith(("bbox_head.rtm_kernel", "bbox_head.mask_head.projection")) and key.endswith("weight"):
            state[key] = torch.randn(value.shape, generator=generator)  # masks with a shape, not all on
    torch.save(saved, checkpoint)
    return out_dir


def box_iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
