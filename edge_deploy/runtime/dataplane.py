"""The protocol-neutral data plane: what the runtime can be asked, with no HTTP in sight.

Readiness, metadata (the runtime's own and the Open Inference Protocol's), tensors in and out
(`infer`, every input checked against the model), and task answers for a photo (`predict`, with
the model's recorded pipeline: `serving`). `routes` maps endpoints onto these calls.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_deploy import __version__
from edge_deploy.runtime.codecs import oip
from edge_deploy.runtime.config import DEFAULT_MODEL_NAME, Limits, RuntimeConfig
from edge_deploy.runtime.model import LoadedModel, TensorSpec
from edge_deploy.runtime.refusals import PREDICT_OFF, BadInput, NotFound
from edge_deploy.runtime.serving import ServingModel, Unservable, load_serving

OIP_EXTENSIONS = ["binary_tensor_data"]


@dataclass(frozen=True)
class PredictOptions:
    """The query parameters of /v1/predict, each optional; the model's recorded values are the defaults."""

    score_threshold: float | None = None
    max_detections: int | None = None
    top_k: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> PredictOptions:
        unknown = set(query) - {"score_threshold", "max_detections", "top_k"}
        if unknown:
            raise BadInput(f"unknown query parameter(s) {', '.join(sorted(unknown))}; use score_threshold, "
                           "max_detections or top_k")  # fmt: skip
        return cls(
            score_threshold=_number(query, "score_threshold", float, 0.0, 1.0),
            max_detections=_number(query, "max_detections", int, 1, 10_000),
            top_k=_number(query, "top_k", int, 1, 10_000),
        )


def _number(query: Mapping[str, str], name: str, kind: type, low: float, high: float) -> Any:
    if name not in query:
        return None
    try:
        value = kind(query[name])
    except ValueError:
        raise BadInput(f"{name} must be a {'whole ' if kind is int else ''}number, got {query[name]!r}") from None
    if not (low <= value <= high) or (kind is float and not math.isfinite(value)):
        raise BadInput(f"{name} must be between {low:g} and {high:g}, got {query[name]!r}")
    return value


class DataPlane:
    def __init__(self, model: LoadedModel, limits: Limits, name: str, serving: ServingModel | Unservable) -> None:
        self.model, self.limits, self.name, self.serving = model, limits, name, serving
        self._ready = threading.Event()
        self._ready.set()

    @classmethod
    def open(cls, config: RuntimeConfig, model: LoadedModel) -> DataPlane:
        name = config.model_name or str(model.metadata.get("model_name") or DEFAULT_MODEL_NAME)
        return cls(model, config.limits, name, load_serving(config.model_dir, model))

    def ready(self) -> bool:
        return self._ready.is_set()

    def stop(self) -> None:
        self._ready.clear()

    def check_model(self, name: str, version: str | None) -> None:
        if name != self.name or version not in (None, "1"):
            served = f"{self.name!r} (version 1)"
            asked = f"{name!r}" + (f" version {version!r}" if version is not None else "")
            raise NotFound(f"no model {asked}: this runtime serves {served}")

    def check_input(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.model.input_spec(name).check(shape, dtype)

    def only_input(self, otherwise: str) -> TensorSpec:
        if len(self.model.inputs) != 1:
            names = ", ".join(spec.name for spec in self.model.inputs)
            raise BadInput(f"{otherwise}: the model has {len(self.model.inputs)} inputs ({names})")
        return self.model.inputs[0]

    def infer(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.model.run(arrays)

    def predict(self, frame: np.ndarray, options: PredictOptions) -> dict[str, Any]:
        if isinstance(self.serving, Unservable):
            raise NotFound(f"{PREDICT_OFF}: {self.serving}; send tensors to /v1/infer or /v2/models/{self.name}/infer")
        return self.serving.predict(frame, options, self.model.run)

    def describe(self) -> dict[str, Any]:
        described = {**self.model.describe(), "served_as": self.name}
        if isinstance(self.serving, Unservable):
            return {**described, "predict": f"off: {self.serving}"}
        return {**described, **self.serving.describe()}

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "edge-runtime", "version": __version__, "extensions": OIP_EXTENSIONS}

    def model_metadata(self) -> dict[str, Any]:
        def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
            return [{"name": s.name, "datatype": oip.datatype_of(s.dtype), "shape": s.dims} for s in specs]

        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": tensors(self.model.inputs),
            "outputs": tensors(self.model.outputs),
        }
