# mmdeploy 1.3.1: configs/mmseg/segmentation_dynamic.py
_base_ = ["./segmentation_static.py"]

onnx_config = dict(
    dynamic_axes={
        "input": {0: "batch", 2: "height", 3: "width"},
        "output": {0: "batch", 2: "height", 3: "width"},
    },
)
