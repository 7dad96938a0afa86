"""What turns the model into a task answerer: `serving.json`, recorded by the conversion.

serving.json holds the task, the model config's test pipeline and data preprocessor, the
postprocessing values of its test_cfg and the class names (with where they came from). At load the
pipeline is replayed on probe frames of two shapes to prove that it yields tensors the model takes;
a model whose pipeline cannot feed it fails to start, naming the transform or the size. A recipe
the conversion marked `unservable` (a transform the runtime does not replay) turns /v1/predict off,
with that reason; tensors are still served.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_deploy.runtime import answers
from edge_deploy.runtime.model import LoadedModel, ModelLoadError
from edge_deploy.runtime.preprocess import Normalization, PipelineError, Preprocess
from edge_deploy.runtime.refusals import BadInput

log = logging.getLogger(__name__)

SERVING_FILE = "serving.json"
SERVING_FORMAT = 1
TASKS = ("classification", "detection", "instance-segmentation", "segmentation")
PROBE_FRAMES = ((480, 640), (640, 480))  # (h, w): landscape and portrait camera frames
DEFAULT_TOP_K = 5

Run = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class ServingModel:
    task: str
    input_name: str
    preprocess: Preprocess
    settings: answers.AnswerSettings
    classes_source: str
    transforms: list[dict[str, Any]]  # the recorded pipeline, as /v1/model shows it
    pipeline_source: str

    def predict(self, frame: np.ndarray, options: Any, run: Run) -> dict[str, Any]:
        prepared = self.preprocess(frame)
        try:
            outputs = run({self.input_name: prepared.tensor})
        except BadInput as exc:  # the pipeline made a tensor the model does not take: our fault, not the caller's
            raise RuntimeError(f"the recorded pipeline made an input the model refuses: {exc}") from None
        if self.task == "classification":
            answer = answers.classification(outputs, self.settings, options.top_k)
        elif self.task == "segmentation":
            answer = answers.segmentation(outputs, prepared, self.settings)
        else:
            answer = answers.detection(
                outputs, prepared, self.settings, options.score_threshold, options.max_detections,
                with_masks=self.task == "instance-segmentation",
            )  # fmt: skip
        height, width = prepared.original_hw
        return {"task": self.task, "image": {"width": width, "height": height}, **answer}

    def describe(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "classes": list(self.settings.classes),
            "classes_source": self.classes_source,
            "pipeline": self.transforms,
            "pipeline_source": self.pipeline_source,
            "defaults": {
                "score_threshold": self.settings.score_threshold,
                "max_detections": self.settings.max_detections,
                "top_k": self.settings.top_k,
            },
        }


class Unservable(str):
    """Why /v1/predict is off for this model (no recipe, or one the conversion could not make)."""


def load_serving(model_dir: Path, model: LoadedModel) -> ServingModel | Unservable:
    """The model's serving recipe, checked against the model; `Unservable` saying why there is none."""
    path = model_dir / SERVING_FILE
    if not path.is_file():
        log.info("no %s in %s: /v1/predict is off, tensors only", SERVING_FILE, model_dir)
        return Unservable(f"the model directory has no {SERVING_FILE}, so there is no recorded pipeline")
    try:
        recipe = json.loads(path.read_text())
        if recipe.get("unservable"):
            log.warning("/v1/predict is off: %s", recipe["unservable"])
            return Unservable(f"the conversion could not record a pipeline the runtime replays: {recipe['unservable']}")
        serving = _build(recipe, model)
    except (OSError, ValueError, KeyError, TypeError, PipelineError) as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    _probe(serving, model, path)
    return serving


def _build(recipe: Mapping[str, Any], model: LoadedModel) -> ServingModel:
    if recipe.get("format") != SERVING_FORMAT:
        raise ValueError(
            f"format {recipe.get('format')!r} is not {SERVING_FORMAT}: rebuild the image with this runtime"
        )
    task = recipe["task"]
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {', '.join(TASKS)}")
    input_name = recipe.get("input") or model.inputs[0].name
    model.input_spec(input_name)
    norm = recipe["normalization"]
    pad_size = norm.get("pad_size")
    normalization = Normalization(
        mean=tuple(float(v) for v in norm["mean"]),
        std=tuple(float(v) for v in norm["std"]),
        to_rgb=bool(norm.get("to_rgb", False)),
        pad_size_divisor=int(norm.get("pad_size_divisor") or 1),
        pad_value=float(norm.get("pad_value") or 0.0),
        pad_size=tuple(int(v) for v in pad_size) if pad_size else None,
    )
    post = recipe.get("postprocess") or {}
    settings = answers.AnswerSettings(
        classes=tuple(str(name) for name in recipe.get("classes") or ()),
        score_threshold=float(post.get("score_threshold") or 0.0),
        max_detections=int(post.get("max_detections") or 100),
        top_k=int(post.get("top_k") or DEFAULT_TOP_K),
        per_box_masks=bool(post.get("per_box_masks", False)),
        mask_resize=str(post.get("mask_resize") or "input"),
        mask_threshold=float(post.get("mask_threshold") or 0.5),
        align_corners=bool(post.get("align_corners", False)),
    )
    _check_outputs(task, [spec.name for spec in model.outputs])
    transforms = list(recipe["transforms"])
    return ServingModel(
        task,
        input_name,
        Preprocess(transforms, normalization),
        settings,
        str(recipe.get("classes_source") or "none"),
        transforms,
        str(recipe.get("pipeline_source") or ""),
    )


def _check_outputs(task: str, names: list[str]) -> None:
    needed = {"detection": {"dets", "labels"}, "instance-segmentation": {"dets", "labels", "masks"}}.get(task, set())
    missing = needed - set(names)
    if missing:
        raise ValueError(f"a {task} model must have outputs {', '.join(sorted(needed))}; it has {', '.join(names)}")


def _probe(serving: ServingModel, model: LoadedModel, path: Path) -> None:
    """Replay the pipeline on blank frames: the tensor must fit the model's input at every frame shape."""
    spec = model.input_spec(serving.input_name)
    for height, width in PROBE_FRAMES:
        prepared = serving.preprocess(np.zeros((height, width, 3), dtype=np.uint8))
        try:
            spec.check(prepared.tensor.shape, prepared.tensor.dtype)
        except BadInput as exc:
            raise ModelLoadError(
                f"{path}: the recorded pipeline turns a {width}x{height} photo into {list(prepared.tensor.shape)}, "
                f"which the model does not take ({exc})"
            ) from None
