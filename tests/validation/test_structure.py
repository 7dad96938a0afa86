"""Structure checks: each problem is reported under its own check, naming what differs."""

import onnx

from edge_deploy.conversion import InputSpec
from edge_deploy.runtime.config import find_mmdeploy_ops_library
from edge_deploy.validation.gate import gate_failure_message
from edge_deploy.validation.structure import ExpectedSignature, check_structure
from tests.validation.tiny_models import custom_op_model, export_classifier, relu_model


def _checks(report):
    return {check.name: check for check in report.checks}


def _signature(shape=(1, 3, 32, 32), axes=None, outputs=("output",), opset=11, name="input"):
    return ExpectedSignature([InputSpec(name, list(shape), dict(axes or {}))], list(outputs), opset)


def test_an_exported_model_passes_every_check(tmp_path):
    path, _ = export_classifier(tmp_path)
    report = check_structure(path, _signature(axes={0: "batch"}))
    assert report.passed, report.failures
    assert set(_checks(report)) == {
        "checker",
        "shape_inference",
        "io_signature",
        "opset",
        "custom_ops",
        "onnxruntime_load",
    }
    assert report.inputs == {"input": ["batch", 3, 32, 32]}
    assert report.opset_imports["ai.onnx"] == 11
    assert report.custom_ops == []


def test_io_signature_mismatches_name_input_axis_and_value(tmp_path):
    path, _ = export_classifier(tmp_path)
    report = check_structure(path, _signature(shape=(1, 3, 64, 32), axes={0: "batch"}, outputs=("dets", "labels")))
    signature = _checks(report)["io_signature"]
    assert not signature.passed and not report.passed
    assert "input 'input' axis 2 is 32 in the ONNX model, the manifest expects 64" in signature.detail
    assert "outputs are ['output'], the manifest expects ['dets', 'labels']" in signature.detail


def test_a_static_axis_the_manifest_declares_dynamic_is_reported(tmp_path):
    path, _ = export_classifier(tmp_path, dynamic_batch=False)
    detail = _checks(check_structure(path, _signature(axes={0: "batch"})))["io_signature"].detail
    assert "axis 0 is static (1) in the ONNX model, the manifest declares it dynamic ('batch')" in detail


def test_a_dynamic_axis_the_manifest_declares_static_is_reported(tmp_path):
    path, _ = export_classifier(tmp_path, dynamic_batch=True)
    detail = _checks(check_structure(path, _signature()))["io_signature"].detail
    assert "input 'input' axis 0 is 'batch' in the ONNX model, the manifest expects 1" in detail


def test_wrong_input_name_and_rank(tmp_path):
    path = relu_model(tmp_path / "m.onnx", shape=("batch", 3, 32))
    detail = _checks(check_structure(path, _signature(name="image")))["io_signature"].detail
    assert "inputs are ['input'], the manifest expects ['image']" in detail
    path = relu_model(tmp_path / "m.onnx", shape=(1, 3, 32))
    detail = _checks(check_structure(path, _signature(name="input")))["io_signature"].detail
    assert "input 'input' has rank 3 [1, 3, 32], the manifest expects rank 4 [1, 3, 32, 32]" in detail


def test_wrong_opset_is_reported(tmp_path):
    path, _ = export_classifier(tmp_path, opset=13)
    opset = _checks(check_structure(path, _signature(axes={0: "batch"}, opset=11)))["opset"]
    assert not opset.passed
    assert opset.detail == "model has ONNX opset 13, the manifest declares 11"


def test_an_ir_version_newer_than_onnx_runtime_reads_fails_the_load_check(tmp_path):
    path = relu_model(tmp_path / "m.onnx", shape=(1, 3, 32, 32), ir_version=14)
    load = _checks(check_structure(path, _signature()))["onnxruntime_load"]
    assert not load.passed
    assert "ONNX Runtime cannot load the model" in load.detail and "IR version" in load.detail


def test_checker_errors_are_reported(tmp_path):
    model = onnx.load(str(relu_model(tmp_path / "m.onnx", shape=(1, 3, 32, 32))))
    model.graph.node[0].input[0] = "nowhere"
    onnx.save(model, str(tmp_path / "broken.onnx"))
    report = check_structure(tmp_path / "broken.onnx", _signature())
    checker = _checks(report)["checker"]
    assert not checker.passed and "nowhere" in checker.detail


def test_unknown_custom_operators_fail_by_name(tmp_path):
    path = custom_op_model(tmp_path / "m.onnx", "com.acme", "Warp")
    report = check_structure(path, ExpectedSignature([], ["output"], 11))
    custom = _checks(report)["custom_ops"]
    assert not custom.passed
    assert "unexpected custom operators ['com.acme::Warp']" in custom.detail
    assert report.custom_ops == ["com.acme::Warp"]


def test_mmdeploy_operators_run_with_the_mmdeploy_library(tmp_path):
    # The x86_64 mmdeploy wheel ships libmmdeploy_onnxruntime_ops.so; it registers into this ONNX Runtime.
    assert find_mmdeploy_ops_library() is not None, "mmdeploy's ONNX Runtime custom-op library is missing"
    path = custom_op_model(
        tmp_path / "m.onnx", "mmdeploy", "grid_sampler", interpolation_mode=0, padding_mode=0, align_corners=0
    )
    report = check_structure(path, ExpectedSignature([], ["output"], 11))
    checks = _checks(report)
    assert checks["custom_ops"].passed, checks["custom_ops"].detail
    assert "mmdeploy::grid_sampler" in checks["custom_ops"].detail
    assert checks["onnxruntime_load"].passed, checks["onnxruntime_load"].detail
    assert report.custom_op_library.startswith("libmmdeploy_onnxruntime_ops.so")


def test_an_operator_no_runtime_implements_is_named_with_no_manifest_fix(tmp_path):
    # mmdeploy exports mmcv's DeformConv2d (VFNet, TOOD) as mmdeploy::MMCVDeformConv2d; its ONNX Runtime
    # library implements only the modulated variant.
    path = custom_op_model(tmp_path / "m.onnx", "mmdeploy", "MMCVDeformConv2d")
    report = check_structure(path, ExpectedSignature([], ["output"], 11))
    assert "MMCVDeformConv2d(-1) is not a registered function/op" in _checks(report)["onnxruntime_load"].detail
    message = gate_failure_message("m.onnx", report, None)
    assert message.startswith("m.onnx failed validation: ")
    assert "no manifest field fixes this" in message
