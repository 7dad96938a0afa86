# mmdeploy 1.3.1: configs/mmpretrain/classification_onnxruntime_static.py
_base_ = ["./classification_static.py", "../_base_/backends/onnxruntime.py"]

onnx_config = dict(input_shape=None)
