# mmdeploy 1.3.1: configs/mmseg/segmentation_static.py, with one change: with_argmax=False exports the
# per-class logits (N x C x H x W, float) where mmdeploy exports the class map. mmseg resizes the
# logits to the photo and then takes the argmax; a class map can only be resized as labels, which
# moves class boundaries (92.9-97.9 % of pixels agreed with PyTorch over 11 mmseg models on six
# photos; from the logits, 9 of them agree on every photo: docs/user-guide.md). The runtime resizes
# the logits in bands of rows, so a large photo costs no classes x height x width floats beyond the
# model's own output. The segmentation-argmax_onnxruntime_* profiles keep mmdeploy's class map.
_base_ = ["../_base_/onnx_config.py"]

codebase_config = dict(type="mmseg", task="Segmentation", with_argmax=False)
