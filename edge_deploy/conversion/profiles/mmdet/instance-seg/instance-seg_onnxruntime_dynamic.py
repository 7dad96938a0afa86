# mmdeploy 1.3.1: configs/mmdet/instance-seg/instance-seg_onnxruntime_dynamic.py
_base_ = ["../_base_/base_instance-seg_dynamic.py", "../../_base_/backends/onnxruntime.py"]
