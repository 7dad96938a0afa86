"""The PyTorch reference on photos: the OpenMMLab codebase's own inference API, per photo.

Run in the conversion environment (torch and the codebase installed) by the validation gate. The
answers use the edge runtime's schema (`edge_deploy.runtime.answers`), in the photo's pixels:
- classification: the top classes with their scores (one more than five, to see ties at the cut);
- detection and instance segmentation: mmdet's `inference_detector` detections down to
  `DETECTION_FLOOR`, each flagged `tied` when another detection's score is within `TIE` of its own
  (NMS keeps either of two tied boxes, in PyTorch as in ONNX Runtime), with COCO RLE masks;
- semantic segmentation: mmseg's `inference_model` label map as a PNG.
The photos are decoded as OpenMMLab's LoadImageFromFile decodes them (OpenCV, BGR).

Beside the answers, `tensor_reference` keeps each photo's input tensor (MMDeploy's own
preprocessing) and the raw outputs of the model as MMDeploy exported it: what the image's Open
Inference Protocol endpoint must return for that tensor, within the gate's tolerances.

Written as `photo-reference/` (reference.json, the photos, tensors/) in the gate's output.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edge_deploy.acceptance.photos import MEDIA_TYPES, Photo
from edge_deploy.errors import EdgeDeployError
from edge_deploy.files import atomic_directory

REFERENCE_DIR = "photo-reference"
REFERENCE_FILE = "reference.json"
TENSORS_DIR = "tensors"
DETECTION_FLOOR = 0.05  # detections below this score are not recorded
TIE = 1e-5
TOP_CLASSES = 6
SCOPES = {
    "classification": "mmpretrain",
    "detection": "mmdet",
    "instance-segmentation": "mmdet",
    "segmentation": "mmseg",
}


class ReferenceError(EdgeDeployError):
    """The photo reference cannot be computed or read."""


@dataclass(frozen=True)
class PhotoAnswer:
    photo: str  # the photo's file name
    sha256: str
    width: int
    height: int
    answer: dict[str, Any]  # the task's answer, in the runtime's schema


@dataclass(frozen=True)
class PhotoReference:
    task: str
    source: str  # which API answered
    answers: list[PhotoAnswer]
    # The gate's tolerances (validation.parity.Tolerances as a dict), for the raw outputs in tensors/
    tolerances: dict[str, float | None] = field(default_factory=dict)
    # Per photo, tensors/<photo>.npz: the input tensor MMDeploy's preprocessing makes of it
    # ("input/<name>") and the patched PyTorch model's raw outputs on it ("output/<name>")
    tensors: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)  # the names the answers' labels stand for

    def write(self, directory: Path, photos: Sequence[Photo], tensors: Mapping[str, Mapping] | None = None) -> Path:
        """`directory/photo-reference/` (reference.json, the photos, tensors/), complete or not at all."""
        final = directory / REFERENCE_DIR
        with atomic_directory(final, replace=True) as work:
            for photo in photos:
                (work / photo.name).write_bytes(photo.body)
            if tensors:
                (work / TENSORS_DIR).mkdir()
                for name, arrays in tensors.items():
                    np.savez(work / TENSORS_DIR / f"{name}.npz", **arrays)
            (work / REFERENCE_FILE).write_text(json.dumps(asdict(self), indent=1, allow_nan=False) + "\n")
        return final

    @classmethod
    def read(cls, directory: Path) -> tuple[PhotoReference, list[Photo]]:
        path = directory / REFERENCE_FILE
        try:
            data = json.loads(path.read_text())
            answers = [PhotoAnswer(**a) for a in data["answers"]]
            reference = cls(data["task"], data["source"], answers, data["tolerances"], data["tensors"], data["classes"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReferenceError(f"cannot read the photo reference {path}: {exc}") from None
        photos = []
        for answer in reference.answers:
            body = (directory / answer.photo).read_bytes()
            photos.append(Photo(answer.photo, MEDIA_TYPES[Path(answer.photo).suffix.lower()], body))
            if photos[-1].sha256 != answer.sha256:
                raise ReferenceError(f"{directory / answer.photo} changed after the gate answered it")
        return reference, photos


def read_tensors(directory: Path, photo: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs, outputs) of a photo's tensors/<photo>.npz."""
    with np.load(directory / TENSORS_DIR / f"{photo}.npz") as arrays:
        inputs = {k.removeprefix("input/"): arrays[k] for k in arrays.files if k.startswith("input/")}
        outputs = {k.removeprefix("output/"): arrays[k] for k in arrays.files if k.startswith("output/")}
    return inputs, outputs


def tensor_reference(reference, photos: Sequence[Photo]) -> dict[str, dict[str, np.ndarray]]:
    """Per photo, its input tensor and the raw outputs of `reference` (a validation.reference
    MMDeployReference: the model as MMDeploy exported it) on it; {} for a model of several inputs."""
    if len(reference.input_names) != 1:
        return {}
    found = {}
    with contextlib.redirect_stdout(sys.stderr):
        for photo in photos:
            feeds = {reference.input_names[0]: reference.photo_input(_frame(photo))}
            outputs = reference(feeds)
            found[photo.name] = {
                **{f"input/{name}": value for name, value in feeds.items()},
                **{f"output/{name}": np.asarray(value) for name, value in outputs.items()},
            }
    return found


def reference_answers(
    task: str,
    config: Path,
    checkpoint: Path,
    photos: Sequence[Photo],
    pipeline=None,
    *,
    detection_floor: float = DETECTION_FLOOR,
) -> PhotoReference:
    """The codebase's inference API on each photo. `pipeline`: the test pipeline the conversion
    recorded for serving (serving.json), which the segmentation API runs in place of the config's.
    `detection_floor`: detections scoring below it are not recorded."""
    if task not in SCOPES:
        raise ReferenceError(f"no photo reference for task {task!r}")
    from mmengine.registry import DefaultScope

    from edge_deploy.conversion.environment import ensure_torchvision_importable

    ensure_torchvision_importable()
    # mmengine keeps one default registry scope per process: set the codebase's for its API. What
    # the APIs print ("Loads checkpoint by ...") goes to stderr: stdout may carry a JSON report.
    with DefaultScope.overwrite_default_scope(SCOPES[task]), contextlib.redirect_stdout(sys.stderr):
        answerer = partial(_detector, floor=detection_floor) if SCOPES[task] == "mmdet" else _ANSWERERS[task]
        answer_photo, source = answerer(config, checkpoint, pipeline)
        answers = []
        for photo in photos:
            frame = _frame(photo)
            answers.append(
                PhotoAnswer(photo.name, photo.sha256, int(frame.shape[1]), int(frame.shape[0]), answer_photo(frame))
            )
    return PhotoReference(task, source, answers)


def _frame(photo: Photo) -> np.ndarray:
    import cv2

    frame = cv2.imdecode(np.frombuffer(photo.body, np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise ReferenceError(f"photo {photo.name} cannot be decoded")
    return frame


def _classifier(config: Path, checkpoint: Path, pipeline):
    from mmpretrain import ImageClassificationInferencer

    inferencer = ImageClassificationInferencer(model=str(config), pretrained=str(checkpoint), device="cpu")
    inferencer.show_progress = False  # its progress bar would go to the task's stdout

    def answer(frame: np.ndarray) -> dict[str, Any]:
        scores = np.asarray(inferencer(frame)[0]["pred_scores"], dtype=np.float64)
        order = np.argsort(-scores, kind="stable")[:TOP_CLASSES]
        return {"classes": [{"label": int(i), "score": float(scores[i])} for i in order]}

    return answer, "mmpretrain ImageClassificationInferencer"


def _detector(config: Path, checkpoint: Path, pipeline, floor: float = DETECTION_FLOOR):
    from mmdet.apis import inference_detector, init_detector

    from edge_deploy.runtime.answers import coco_rle

    model = init_detector(str(config), str(checkpoint), device="cpu")
    head = getattr(model, "bbox_head", None)
    if head is not None and "loss_cls" not in vars(head) and "loss_cls" not in head._modules:
        # mmdet 3.3's predict reads head.loss_cls, which SSDHead never makes (mmdetection issues
        # 11305 and 11780): every SSD inference failed with "'SSDHead' object has no attribute"
        head.loss_cls = None

    def answer(frame: np.ndarray) -> dict[str, Any]:
        found = inference_detector(model, frame).pred_instances
        scores = found.scores.numpy().astype(np.float64)
        detections = []
        for index in np.flatnonzero(scores >= floor):
            detection = {
                "box": [float(v) for v in found.bboxes[index].tolist()],
                "score": float(scores[index]),
                "label": int(found.labels[index]),
                "tied": bool((np.abs(scores - scores[index]) < TIE).sum() > 1),
            }
            if "masks" in found:
                detection["mask"] = coco_rle(found.masks[index].numpy().astype(bool))
            detections.append(detection)
        return {"detections": detections}

    return answer, "mmdet inference_detector"


def _segmentor(config: Path, checkpoint: Path, pipeline):
    from mmengine.config import Config
    from mmseg.apis import inference_model, init_model

    from edge_deploy.runtime.answers import label_map_png

    model = init_model(Config.fromfile(str(config)), str(checkpoint), device="cpu")
    if pipeline:
        # a list, which mmseg's inference_model edits (it removes LoadAnnotations)
        model.cfg.test_pipeline = [_with_tuples(transform) for transform in pipeline]

    def answer(frame: np.ndarray) -> dict[str, Any]:
        labels = inference_model(model, frame).pred_sem_seg.data[0].numpy()
        return {"segmentation": {"label_map": label_map_png(labels)}}

    return answer, "mmseg inference_model"


def _with_tuples(value: Any) -> Any:
    """serving.json's pipeline with its lists as the tuples the config wrote: JSON keeps no tuples,
    and mmcv's keep-ratio Resize takes its scale only as one ("Scale must be a number or tuple of
    int"), so every dynamic segmentor's reference failed."""
    if isinstance(value, dict):
        return {key: _with_tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(_with_tuples(item) for item in value)
    return value


_ANSWERERS = {
    "classification": _classifier,
    "detection": _detector,
    "instance-segmentation": _detector,
    "segmentation": _segmentor,
}
