"""The PyTorch reference on photos (edge_deploy.acceptance.reference) for heads whose own inference
API needs help on this stack."""

import pytest

from edge_deploy.acceptance.photos import builtin_photos
from edge_deploy.acceptance.reference import reference_answers
from edge_deploy.conversion import load_model_dir


@pytest.mark.slow
def test_an_ssd_detector_gets_a_reference(sample_model_dir):
    # mmdet 3.3's inference_detector fails on every SSD model ("'SSDHead' object has no attribute
    # 'loss_cls'"); without a reference, its images could never be accepted
    model_dir = load_model_dir(sample_model_dir("ssdlite-mobilenetv2"))
    photos = builtin_photos()
    reference = reference_answers(
        "detection", model_dir.config_path, model_dir.checkpoint_path, photos, detection_floor=0.0
    )
    assert [answer.photo for answer in reference.answers] == [photo.name for photo in photos]
    for answer in reference.answers:
        detections = answer.answer["detections"]
        assert detections and all(len(d["box"]) == 4 and 0 <= d["label"] < 80 for d in detections)


@pytest.mark.slow
def test_a_segmentor_with_a_recorded_keep_ratio_pipeline_gets_a_reference(sample_model_dir):
    # serving.json's pipeline, as JSON gives it back (lists): mmcv's keep-ratio Resize refused a
    # list scale, so every dynamic segmentor's reference failed and its images could not be accepted
    model_dir = load_model_dir(sample_model_dir("fast-scnn"))
    pipeline = [
        {"type": "LoadImageFromFile"},
        {"type": "Resize", "scale": [1024, 512], "keep_ratio": True},
        {"type": "LoadAnnotations"},  # as the configs have it: mmseg's API removes it from the list
        {"type": "PackSegInputs"},
    ]
    photo = builtin_photos()[0]
    reference = reference_answers("segmentation", model_dir.config_path, model_dir.checkpoint_path, [photo], pipeline)
    (answer,) = reference.answers
    assert answer.answer["segmentation"]["label_map"] and (answer.width, answer.height) == (512, 600)
