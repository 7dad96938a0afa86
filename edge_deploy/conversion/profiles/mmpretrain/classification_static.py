# mmdeploy 1.3.1: configs/mmpretrain/classification_static.py
_base_ = ["../_base_/onnx_config.py"]

codebase_config = dict(type="mmpretrain", task="Classification")
