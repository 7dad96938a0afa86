# mmdeploy 1.3.1: configs/mmdet/_base_/base_instance-seg_dynamic.py
_base_ = ["./base_instance-seg_static.py"]

onnx_config = dict(
    dynamic_axes={
        "input": {0: "batch", 2: "height", 3: "width"},
        "dets": {0: "batch", 1: "num_dets"},
        "labels": {0: "batch", 1: "num_dets"},
        "masks": {0: "batch", 1: "num_dets", 2: "height", 3: "width"},
    },
)
