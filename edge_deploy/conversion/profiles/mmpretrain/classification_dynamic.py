# mmdeploy 1.3.1: configs/mmpretrain/classification_dynamic.py (dynamic batch only: the classifier
# head's input size is fixed by the backbone's stride and the crop size).
_base_ = ["./classification_static.py"]

onnx_config = dict(
    dynamic_axes={
        "input": {0: "batch"},
        "output": {0: "batch"},
    },
)
