# mmdeploy 1.3.1: configs/mmpretrain/classification_onnxruntime_dynamic.py
_base_ = ["./classification_dynamic.py", "../_base_/backends/onnxruntime.py"]
