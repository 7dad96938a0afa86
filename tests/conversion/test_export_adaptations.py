"""PyTorch still runs a model after an export in the same process (a local workflow run converts, then
validates and computes the photo reference, all in one Python process).

MMDeploy's function rewriter sets a rewritten static method back as a plain function when its
context exits, so Swin's `ShiftWindowMSA.get_attn_mask` got `self` as its first argument and every
PyTorch inference of a Swin classifier after a conversion failed: the gate's photo reference was
missing, so its images could not be accepted."""

import inspect

import pytest

from edge_deploy.acceptance.photos import builtin_photos
from edge_deploy.acceptance.reference import reference_answers
from edge_deploy.conversion import convert, load_model_dir
from edge_deploy.samples import write_shipped_config

SWIN = "mmpretrain:swin_transformer/swin-tiny_16xb64_in1k.py"


@pytest.mark.slow
def test_a_swin_classifier_answers_in_pytorch_after_its_export(tmp_path):
    model_dir = load_model_dir(write_shipped_config(SWIN, tmp_path / "model"))
    convert(model_dir, tmp_path / "onnx")

    from mmpretrain.models.utils import ShiftWindowMSA

    assert isinstance(inspect.getattr_static(ShiftWindowMSA, "get_attn_mask"), staticmethod)
    photo = builtin_photos()[0]
    reference = reference_answers("classification", model_dir.config_path, model_dir.checkpoint_path, [photo])
    classes = reference.answers[0].answer["classes"]
    assert len(classes) == 6 and all(0 <= entry["label"] < 1000 for entry in classes)
