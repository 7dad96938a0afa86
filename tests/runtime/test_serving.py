"""serving.json as the runtime reads it: a recipe it can replay, one it refuses at start, and a model
the conversion could not record a pipeline for (tensors only, /v1/predict says why)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge_deploy.runtime.dataplane import DataPlane, PredictOptions
from edge_deploy.runtime.model import ModelLoadError, load_model
from edge_deploy.runtime.refusals import NotFound
from tests.runtime.conftest import runtime_config

NORMALIZATION = {"mean": [0, 0, 0], "std": [255, 255, 255], "to_rgb": True}


@pytest.fixture
def model_dir(sealed_model, tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(sealed_model.model_dir, directory)
    return directory


def plane_with(model_dir, edge_key, recipe: dict) -> DataPlane:
    (model_dir / "serving.json").write_text(json.dumps({"format": 1, "input": "images", **recipe}))
    config = runtime_config(model_dir, edge_key.env)
    return DataPlane.open(config, load_model(config))


def test_a_recipe_is_replayed_and_answers_in_the_photos_terms(model_dir, edge_key):
    plane = plane_with(
        model_dir,
        edge_key,
        {"task": "classification", "classes": ["a", "b"], "classes_source": "test",
         "transforms": [{"type": "LoadImageFromFile"}, {"type": "Resize", "scale": [8, 8]}, {"type": "PackInputs"}],
         "normalization": NORMALIZATION},
    )  # fmt: skip
    answer = plane.predict(np.full((30, 40, 3), 128, np.uint8), PredictOptions(top_k=3))
    assert answer["task"] == "classification" and answer["image"] == {"width": 40, "height": 30}
    assert len(answer["classes"]) == 3
    assert plane.describe()["pipeline"][1] == {"type": "Resize", "scale": [8, 8]}


def test_a_pipeline_that_cannot_feed_the_model_stops_the_start_naming_the_sizes(model_dir, edge_key):
    with pytest.raises(ModelLoadError, match=r"turns a 640x480 photo into \[1, 3, 480, 640\]"):
        plane_with(model_dir, edge_key, {"task": "classification", "transforms": [], "normalization": NORMALIZATION})


def test_an_unknown_transform_stops_the_start_naming_it(model_dir, edge_key):
    recipe = {"task": "classification", "transforms": [{"type": "LetterResize", "scale": [8, 8]}],
              "normalization": NORMALIZATION}  # fmt: skip
    with pytest.raises(ModelLoadError, match=r"serving.json: the test pipeline's transform 'LetterResize'"):
        plane_with(model_dir, edge_key, recipe)


def test_an_unservable_model_serves_tensors_and_says_why_predict_is_off(model_dir, edge_key):
    plane = plane_with(model_dir, edge_key, {"task": "detection", "unservable": "transform 'LetterResize' ..."})
    with pytest.raises(NotFound, match=r"/v1/predict is off for this model: .*LetterResize"):
        plane.predict(np.zeros((8, 8, 3), np.uint8), PredictOptions())
    assert "LetterResize" in plane.describe()["predict"]
    batch = np.zeros((1, 3, 8, 8), np.float32)
    assert plane.infer({"images": batch})["scores"].shape == (1, 4)
