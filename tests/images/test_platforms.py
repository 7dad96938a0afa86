"""The platform matrix as shipped, its validation, target detection and the build host's platform."""

from __future__ import annotations

import copy
import logging

import pytest
import yaml

from edge_deploy.errors import ConfigError
from edge_deploy.platforms import (
    DEFAULT_MATRIX_PATH,
    OciPlatform,
    PlatformMatrix,
    build_mode,
    detect_targets,
    host_platform,
)


@pytest.fixture(scope="module")
def document() -> dict:
    return yaml.safe_load(DEFAULT_MATRIX_PATH.read_text())


def test_the_shipped_matrix_covers_the_edge_fleet():
    matrix = PlatformMatrix.load()
    specs = matrix.platforms
    assert specs["x86_64-cpu"].runtime.onnxruntime.startswith("onnxruntime==")
    assert specs["x86_64-nvidia"].runtime.onnxruntime.startswith("onnxruntime-gpu")
    assert specs["x86_64-nvidia"].execution_providers[0] == "CUDAExecutionProvider"
    assert specs["arm64-cpu"].platform == OciPlatform("linux", "arm64", "v8")
    jetson = specs["jetson-orin"]
    assert jetson.base_image.startswith("nvcr.io/nvidia/l4t-") and jetson.runtime.index_url
    assert jetson.execution_providers[:2] == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert not specs["armv7-cpu"].supported and "no ONNX Runtime wheel" in specs["armv7-cpu"].reason


def test_detection_maps_classes_and_raw_platforms_to_targets_in_order_without_duplicates():
    targets = detect_targets(["linux/arm64", "x86_64-nvidia", "arm64-cpu", "linux/amd64"], "onnxruntime")
    assert [t.name for t in targets] == ["arm64-cpu", "x86_64-nvidia", "x86_64-cpu"]
    assert all(t.backend == "onnxruntime" for t in targets)


@pytest.mark.parametrize(
    ("requested", "backend", "message"),
    [
        (["linux/arm/v7"], "onnxruntime", "target 'linux/arm/v7' (armv7-cpu, linux/arm/v7) is not supported: PyPI has"),
        (["raspberry-pi"], "onnxruntime", "unknown deploy target 'raspberry-pi'; supported device classes: x86_64-cpu"),
        (["linux/s390x"], "onnxruntime", "no device class builds for platform linux/s390x; supported device classes"),
        (["linux/riscv64"], "onnxruntime", "unknown architecture 'riscv64'"),
        (["x86_64-cpu"], "tensorrt", "deploy backend 'tensorrt' is not supported; supported backends: onnxruntime"),
        ([], "onnxruntime", "no deploy targets given; supported device classes"),
    ],
)
def test_unknown_or_unsupported_targets_are_refused_with_what_is_supported(requested, backend, message):
    with pytest.raises(ConfigError) as failure:
        detect_targets(requested, backend)
    assert message in str(failure.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["platforms"]["x86_64-cpu"].update(platform="linux/amd"), "platforms.x86_64-cpu.platform"),
        (lambda d: d["platforms"]["x86_64-cpu"].update(colour="red"), "unknown key(s) colour"),
        (lambda d: d["platforms"]["x86_64-cpu"]["runtime"].update(packages=["onnxruntime"]), "must be pinned"),
        (lambda d: d["platforms"]["x86_64-cpu"]["runtime"].update(packages=["numpy==2.4.6"]), "ONNX Runtime build"),
        (lambda d: d["platforms"]["x86_64-cpu"].update(execution_providers=["CUDAExecutionProvider"]), "must end"),
        (lambda d: d["platforms"]["x86_64-cpu"].update(execution_providers=["FastProvider"]), "unknown execution"),
        (lambda d: d["platforms"]["x86_64-cpu"].update(backends=["tvm"]), "unknown backend(s) tvm"),
        (lambda d: d["platforms"]["armv7-cpu"].pop("reason"), "needs a `reason`"),
        (lambda d: d["platforms"]["x86_64-nvidia"].update(default_for_platform=True), "both x86_64-cpu and x86_64"),
        (lambda d: d["platforms"]["x86_64-cpu"].update(env={"lower": "x"}), "names are UPPER_CASE"),
        (lambda d: d.update(schema_version=2), "schema_version must be 1"),
    ],
)
def test_a_malformed_matrix_fails_on_load_naming_the_entry(document, edit, message):
    broken = copy.deepcopy(document)
    edit(broken)
    with pytest.raises(ConfigError) as failure:
        PlatformMatrix.from_document(broken, "platforms.yaml")
    assert message in str(failure.value)
    assert str(failure.value).startswith("platforms.yaml")


def test_host_platform_comes_from_the_engine_when_given():
    assert host_platform({"Architecture": "aarch64", "OSType": "linux"}) == OciPlatform("linux", "arm64", "v8")
    assert host_platform({"Architecture": "x86_64", "OSType": "linux"}) == OciPlatform.parse("linux/amd64")


def test_build_mode_is_native_or_cross_and_logged(caplog):
    x86, arm = detect_targets(["x86_64-cpu", "arm64-cpu"], "onnxruntime")
    host = OciPlatform.parse("linux/amd64")
    with caplog.at_level(logging.INFO, logger="edge_deploy.platforms"):
        assert build_mode(x86, host) == "native"
        assert build_mode(arm, host) == "cross"
    assert "native build on host linux/amd64" in caplog.text
    assert "cross build on host linux/amd64: COPY-only, no emulation needed" in caplog.text
