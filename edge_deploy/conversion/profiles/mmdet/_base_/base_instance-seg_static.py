# mmdeploy 1.3.1: configs/mmdet/_base_/base_instance-seg_static.py. Masks are exported as the mask
# head gives them (e.g. Mask R-CNN's 28x28 per detection); pasting them into the image is left to
# the caller, as mmdeploy's SDK does.
_base_ = ["./base_static.py"]

onnx_config = dict(output_names=["dets", "labels", "masks"])
codebase_config = dict(post_processing=dict(export_postprocess_mask=False))
