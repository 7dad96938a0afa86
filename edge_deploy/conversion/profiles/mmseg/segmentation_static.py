# mmdeploy 1.3.1: configs/mmseg/segmentation_static.py. with_argmax=True exports the class map
# (N x 1 x H x W, int64); the logits stay inside the graph.
_base_ = ["../_base_/onnx_config.py"]

codebase_config = dict(type="mmseg", task="Segmentation", with_argmax=True)
