# mmdeploy 1.3.1: configs/mmseg/segmentation_onnxruntime_dynamic.py as mmdeploy ships it: with_argmax=True
# exports the class map (N x 1 x H x W, int64), the argmax inside the graph. The runtime can only
# resize it as labels (nearest), so class boundaries can move (see segmentation_static.py).
_base_ = ["./segmentation_onnxruntime_dynamic.py"]

codebase_config = dict(with_argmax=True)
