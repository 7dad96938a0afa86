# mmdeploy 1.3.1: configs/mmdet/detection/detection_onnxruntime_static.py
_base_ = ["../_base_/base_static.py", "../../_base_/backends/onnxruntime.py"]
