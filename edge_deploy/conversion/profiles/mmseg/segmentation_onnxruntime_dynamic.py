# mmdeploy 1.3.1: configs/mmseg/segmentation_onnxruntime_dynamic.py
_base_ = ["./segmentation_dynamic.py", "../_base_/backends/onnxruntime.py"]
