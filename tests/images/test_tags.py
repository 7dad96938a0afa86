"""Content-addressed tags: the same inputs give the same tag, any changed input a new one."""

from __future__ import annotations

import dataclasses

import pytest

from edge_deploy.images.tags import TagInputs, check_tag, content_tag

INPUTS = TagInputs(
    device_class="arm64-cpu",
    platform="linux/arm64/v8",
    base_image_id="sha256:" + "a" * 64,
    runtime_layer_digest="b" * 64,
    model_sha256="c" * 64,
    key_id="edge-2026",
    runtime_code_digest="d" * 64,
    dockerfile_sha256="e" * 64,
    model_metadata={"name": "resnet18"},
    labels={"org.opencontainers.image.created": "2026-01-01T00:00:00Z", "io.edge-deploy.validation.status": "passed"},
)


def test_the_tag_is_stable_and_names_the_device_class():
    tag = content_tag(INPUTS)
    assert tag == content_tag(dataclasses.replace(INPUTS))
    assert tag.startswith("arm64-cpu-") and len(tag) == len("arm64-cpu-") + 24
    check_tag(tag)


def test_the_build_time_label_does_not_change_the_tag():
    later = {**INPUTS.labels, "org.opencontainers.image.created": "2027-06-30T12:00:00Z"}
    assert content_tag(dataclasses.replace(INPUTS, labels=later)) == content_tag(INPUTS)


@pytest.mark.parametrize(
    "change",
    [
        {"base_image_id": "sha256:" + "f" * 64},
        {"runtime_layer_digest": "f" * 64},
        {"model_sha256": "f" * 64},
        {"key_id": "edge-2027"},
        {"runtime_code_digest": "f" * 64},
        {"dockerfile_sha256": "f" * 64},
        {"model_metadata": {"name": "resnet50"}},
        {"labels": {"io.edge-deploy.validation.status": "failed"}},
    ],
)
def test_every_input_changes_the_tag(change):
    assert content_tag(dataclasses.replace(INPUTS, **change)) != content_tag(INPUTS)


def test_invalid_tags_are_refused():
    with pytest.raises(ValueError, match="not a valid image tag"):
        check_tag("v1/beta")
