# mmdeploy 1.3.1: configs/_base_/backends/onnxruntime.py
backend_config = dict(type="onnxruntime")
