# mmdeploy 1.3.1: configs/mmdet/_base_/base_static.py. The detector's NMS is exported into the
# graph with these thresholds; a model directory lowers score_threshold through its own deploy
# config when it needs every candidate box (e.g. random-weight samples score about 0.01).
_base_ = ["../../_base_/onnx_config.py"]

onnx_config = dict(output_names=["dets", "labels"], input_shape=None)
codebase_config = dict(
    type="mmdet",
    task="ObjectDetection",
    model_type="end2end",
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,  # for YOLOv3
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1,
    ),
)
