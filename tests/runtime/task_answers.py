"""/v1/predict on real photos against the OpenMMLab codebases' own inference APIs on the PyTorch model,
for any server of the runtime's API (`edge-deploy runtime`, or the built image):

- classification: the same top-1 and the same top-5 set as mmpretrain's ImageClassificationInferencer;
- detection and instance segmentation: every detection of mmdet's `inference_detector` above 0.3
  is matched by one of the runtime's with the same label and box IoU >= 0.95 (mask IoU >= 0.9).
  Detections whose score ties another's (within 1e-5) are left out: NMS keeps either of two tied
  boxes, in PyTorch as in ONNX Runtime, so which one survives says nothing about the runtime;
- semantic segmentation: >= 99 % of the pixels agree with mmseg's `inference_model`.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.runtime.photos import box_iou, model_files, opencv_frame, photos

SCORE_THRESHOLD = 0.3
TIE = 1e-5
# one sample per task family
TASK_SAMPLES = {
    "classification": "resnet18",
    "detection": "rtmdet-tiny",
    "instance-segmentation": "rtmdet-ins-tiny",
    "segmentation": "fast-scnn",
}


def predict(url: str, body: bytes, **params) -> dict:
    response = requests.post(
        f"{url}/v1/predict", data=body, headers={"Content-Type": "image/jpeg"}, params=params, timeout=120
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    json.dumps(answer, allow_nan=False)  # strict JSON, always
    return answer


def _openmmlab() -> None:
    from edge_deploy.conversion.environment import ensure_torchvision_importable

    ensure_torchvision_importable()


def check_answers(task: str, url: str, source: Path) -> int:
    """Compare the server at `url` with the OpenMMLab API on `source`; the number of answers compared."""
    from mmengine.registry import DefaultScope

    _openmmlab()
    # mmengine keeps one default registry scope per process: an earlier mmdet call would make
    # mmpretrain's inferencer look for its transforms in mmdet's registry
    with DefaultScope.overwrite_default_scope(SCOPES[task]):
        return CHECKS[task](url, source)


def _classification(url: str, source: Path) -> int:
    from mmpretrain import ImageClassificationInferencer

    config, checkpoint = model_files(source)
    inferencer = ImageClassificationInferencer(model=config, pretrained=checkpoint, device="cpu")
    for name, body in photos().items():
        answer = predict(url, body)
        scores = inferencer(opencv_frame(body))[0]["pred_scores"]
        expected = list(np.argsort(-scores)[:5])
        labels = [entry["label"] for entry in answer["classes"]]
        assert labels[0] == expected[0] and set(labels) == set(expected), name
        assert answer["classes"][0]["score"] == pytest.approx(float(scores[expected[0]]), abs=1e-4)
        assert answer["classes"][0]["name"] == inferencer.classes[expected[0]]  # ImageNet's names
    return len(photos())


def _detection(url: str, source: Path) -> int:
    from mmdet.apis import inference_detector, init_detector
    from mmdet.datasets import CocoDataset
    from pycocotools import mask as coco_mask

    model = init_detector(*model_files(source), device="cpu")
    described = requests.get(f"{url}/v1/model", timeout=10).json()
    # the sample's checkpoint has no dataset_meta: the names come from the config's dataset class
    assert described["classes"] == list(CocoDataset.METAINFO["classes"])
    assert "CocoDataset" in described["classes_source"]
    compared = 0
    for name, body in photos().items():
        answer = predict(url, body, score_threshold=SCORE_THRESHOLD - 0.05)
        frame = opencv_frame(body)
        assert answer["image"] == {"width": frame.shape[1], "height": frame.shape[0]}
        expected = inference_detector(model, frame).pred_instances
        scores = expected.scores.numpy()
        for index in np.flatnonzero(scores >= SCORE_THRESHOLD):
            if (np.abs(scores - scores[index]) < TIE).sum() > 1:
                continue
            box, label = expected.bboxes[index].tolist(), int(expected.labels[index])
            candidates = [d for d in answer["detections"] if d["label"] == label]
            best = max(candidates, key=lambda d: box_iou(box, d["box"]), default=None)
            assert best is not None and box_iou(box, best["box"]) >= 0.95, (name, box, label, best)
            assert best["name"] == described["classes"][label]
            if "masks" in expected:
                ours = coco_mask.decode(best["mask"]).astype(bool)
                theirs = expected.masks[index].numpy().astype(bool)
                assert ours.shape == frame.shape[:2]
                # mmdet's RTMDet-Ins rescales mask height by the width's factor and width by the
                # height's (rtmdet_ins_head.py), so its mask can miss the photo's last column or row
                ours = ours[: theirs.shape[0], : theirs.shape[1]]
                union = (ours | theirs).sum()
                assert union == 0 or (ours & theirs).sum() / union >= 0.9, name
            compared += 1
    assert compared >= 50  # the photos give enough untied detections to say something
    return compared


def _segmentation(url: str, source: Path) -> int:
    from mmengine.config import Config
    from mmseg.apis import inference_model, init_model
    from PIL import Image

    config, checkpoint = model_files(source)
    model = init_model(Config.fromfile(config), checkpoint, device="cpu")
    described = requests.get(f"{url}/v1/model", timeout=10).json()
    # the runtime replays the pipeline the conversion recorded; mmseg runs the same one here
    model.cfg.test_pipeline = described["pipeline"]
    for name, body in photos().items():
        answer = predict(url, body)
        frame = opencv_frame(body)
        expected = inference_model(model, frame).pred_sem_seg.data[0].numpy()
        label_map = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["segmentation"]["label_map"]))))
        assert label_map.shape == expected.shape == frame.shape[:2]
        assert (label_map == expected).mean() >= 0.99, name
        shares = {entry["label"]: entry["share"] for entry in answer["classes"]}
        present, counts = np.unique(label_map, return_counts=True)
        assert shares == {int(p): round(int(c) / label_map.size, 6) for p, c in zip(present, counts, strict=True)}
        assert all(entry["name"] == model.dataset_meta["classes"][entry["label"]] for entry in answer["classes"])
    return len(photos())


SCOPES = {
    "classification": "mmpretrain",
    "detection": "mmdet",
    "instance-segmentation": "mmdet",
    "segmentation": "mmseg",
}
CHECKS = {
    "classification": _classification,
    "detection": _detection,
    "instance-segmentation": _detection,
    "segmentation": _segmentation,
}
