# mmdeploy 1.3.1: configs/mmseg/segmentation_onnxruntime_static.py
_base_ = ["./segmentation_static.py", "../_base_/backends/onnxruntime.py"]

onnx_config = dict(input_shape=None)
