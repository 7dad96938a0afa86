# The ONNX export defaults shared by every profile (mmdeploy 1.3.1: configs/_base_/onnx_config.py).
# `optimize=True` asks for mmdeploy's TorchScript graph passes; the PyPI wheel does not ship that
# extension, so mmdeploy logs a warning and exports the graph unoptimized (ONNX Runtime still
# applies its own graph optimizations at session load).
onnx_config = dict(
    type="onnx",
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file="end2end.onnx",
    input_names=["input"],
    output_names=["output"],
    input_shape=None,
    optimize=True,
)
