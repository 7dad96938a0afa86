"""Sweep: configs the installed OpenMMLab codebases ship, converted with no manifest and validated.

    .venv/bin/python benchmarks/conversion_sweep.py [--only SUBSTRING ...] [--json OUT.json] [--timeout 1200]

Each config becomes a model directory the way a user's would look (`edge-deploy sample --config`:
the shipped config with seeded random weights, no manifest), then `load_model_dir` infers the
manifest, `convert` exports it and the validation gate runs with its default settings. Every model
runs in a child process of its own (a crash or a memory spike ends that row, not the sweep). The
table gives, per config: the inferred task, input shape and deploy profile (and the profile or opset
the conversion chose instead, when the inferred one could not export), convert and validate seconds,
and the verdict, or the first line of the error. The last line is the pass rate.

The list is chosen for breadth of architecture, not for the samples' sake: CNNs and transformers,
one- and two-stage detectors, anchor-based and anchor-free heads, instance and semantic
segmentation. Random weights: a detector's class scores sit at their prior (about 0.01), below the
profiles' score threshold, so a detector's exported NMS keeps few detections or none; the table
says how many were compared.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, installed or not

CONFIGS = [
    # classification (mmpretrain)
    "mmpretrain:resnet/resnet50_8xb32_in1k.py",
    "mmpretrain:resnext/resnext50-32x4d_8xb32_in1k.py",
    "mmpretrain:mobilenet_v2/mobilenet-v2_8xb32_in1k.py",
    "mmpretrain:mobilenet_v3/mobilenet-v3-small_8xb128_in1k.py",
    "mmpretrain:efficientnet/efficientnet-b0_8xb32_in1k.py",
    "mmpretrain:shufflenet_v2/shufflenet-v2-1x_16xb64_in1k.py",
    "mmpretrain:regnet/regnetx-400mf_8xb128_in1k.py",
    "mmpretrain:densenet/densenet121_4xb256_in1k.py",
    "mmpretrain:repvgg/repvgg-A0_8xb32_in1k.py",
    "mmpretrain:mobileone/mobileone-s0_8xb32_in1k.py",
    "mmpretrain:hrnet/hrnet-w18_4xb32_in1k.py",
    "mmpretrain:inception_v3/inception-v3_8xb32_in1k.py",
    "mmpretrain:convnext/convnext-tiny_32xb128_in1k.py",
    "mmpretrain:poolformer/poolformer-s12_32xb128_in1k.py",
    "mmpretrain:deit/deit-tiny_4xb256_in1k.py",
    "mmpretrain:swin_transformer/swin-tiny_16xb64_in1k.py",
    "mmpretrain:edgenext/edgenext-xxsmall_8xb256_in1k.py",
    "mmpretrain:efficientformer/efficientformer-l1_8xb128_in1k.py",
    "mmpretrain:mobilevit/mobilevit-xxsmall_8xb128_in1k.py",
    # detection (mmdet): one- and two-stage, anchor-based and anchor-free, a transformer
    "mmdet:retinanet/retinanet_r18_fpn_1x_coco.py",
    "mmdet:faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py",
    "mmdet:cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py",
    "mmdet:fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
    "mmdet:atss/atss_r50_fpn_1x_coco.py",
    "mmdet:gfl/gfl_r50_fpn_1x_coco.py",
    "mmdet:tood/tood_r50_fpn_1x_coco.py",
    "mmdet:vfnet/vfnet_r50_fpn_1x_coco.py",
    "mmdet:yolox/yolox_tiny_8xb8-300e_coco.py",
    "mmdet:rtmdet/rtmdet_s_8xb32-300e_coco.py",
    "mmdet:ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py",
    "mmdet:yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py",
    "mmdet:centernet/centernet_r18_8xb16-crop512-140e_coco.py",
    "mmdet:detr/detr_r50_8xb2-150e_coco.py",
    # instance segmentation (mmdet)
    "mmdet:mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py",
    "mmdet:cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py",
    "mmdet:rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py",
    "mmdet:solov2/solov2_r50_fpn_1x_coco.py",
    # semantic segmentation (mmseg): CNNs, real-time nets, transformers
    "mmseg:fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py",
    "mmseg:pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py",
    "mmseg:deeplabv3plus/deeplabv3plus_r18-d8_4xb2-80k_cityscapes-512x1024.py",
    "mmseg:upernet/upernet_r18_4xb2-40k_cityscapes-512x1024.py",
    "mmseg:hrnet/fcn_hr18s_4xb2-40k_cityscapes-512x1024.py",
    "mmseg:bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py",
    "mmseg:stdc/stdc1_4xb12-80k_cityscapes-512x1024.py",
    "mmseg:mobilenet_v3/mobilenet-v3-d8_lraspp_4xb4-320k_cityscapes-512x1024.py",
    "mmseg:cgnet/cgnet_fcn_4xb4-60k_cityscapes-680x680.py",
    "mmseg:segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py",
    "mmseg:segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512.py",
]


def run_one(spec: str, work: Path) -> dict:
    """In the child: write the model directory, infer, convert, validate; the row as a dict."""
    import logging

    logging.disable(logging.WARNING)
    from edge_deploy.conversion import convert, load_model_dir
    from edge_deploy.errors import EdgeDeployError
    from edge_deploy.samples import write_shipped_config
    from edge_deploy.validation.gate import other_sizes_problem, validate
    from edge_deploy.validation.report import ValidationFailed

    row: dict = {"config": spec}
    model_root = write_shipped_config(spec, work / "model")
    started = time.perf_counter()
    model_dir = load_model_dir(model_root)
    manifest = model_dir.manifest
    row |= {
        "task": manifest.task.value,
        "shape": "x".join(map(str, manifest.inputs[0].shape)),
        "profile": manifest.deploy_profile,
    }
    try:
        result = convert(model_dir, work / "onnx", size_check=other_sizes_problem)
    except EdgeDeployError as exc:  # the conversion's own message: stage, cause, what fixes it
        return row | {"convert_s": round(time.perf_counter() - started, 1), "verdict": f"ERROR: {exc}"}
    row |= {"convert_s": round(time.perf_counter() - started, 1), "opset": result.opset}
    if result.deploy_profile != manifest.deploy_profile:  # the dynamic export did not hold: static instead
        why = re.search(r"exported a model that ([^(:]+)", result.profile_reason)
        row["profile"] = f"{result.deploy_profile} (not {manifest.deploy_profile}: {why[1].strip() if why else '?'})"
    if result.opset_reason:
        row["opset"] = f"{result.opset} (raised from {manifest.opset})"
    started = time.perf_counter()
    try:
        report = validate(model_dir, work / "onnx")
    except ValidationFailed as failure:
        report = failure.report
    row["validate_s"] = round(time.perf_counter() - started, 1)
    row["verdict"] = "PASS" if report.passed else f"FAIL: {report.failure.replace(str(work), '<work>')}"
    row["detections"] = _detections_compared(report)
    return row


def _detections_compared(report) -> int | None:
    if report.parity is None:  # the gate stopped before parity (structure or runtime)
        return None
    counts = [case.task.metrics.get("reference_detections") for case in report.parity.cases if case.task]
    counts = [count for count in counts if count is not None]
    return int(sum(counts)) if counts else None


def child(spec: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="sweep-") as scratch:
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--one", spec, scratch],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=ROOT,
            )
        except subprocess.TimeoutExpired:
            return {"config": spec, "verdict": f"ERROR: no answer within {timeout:.0f} s"}
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode == 0 and lines:
            return json.loads(lines[-1])
        errors = [line for line in done.stderr.splitlines() if line.strip()]
        first = next((line for line in errors if line.startswith("edge_deploy.") or "Error" in line), "")
        detail = first or (errors[-1] if errors else f"exit {done.returncode}")
        seconds = round(time.perf_counter() - started, 1)
        return {"config": spec, "verdict": f"ERROR: {detail[:300]}", "convert_s": seconds}


def table(rows: list[dict]) -> str:
    head = "| config | task | inferred shape, profile | opset | convert s | validate s | dets | verdict |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['config']} | {row.get('task', '')} | {row.get('shape', '')} {row.get('profile', '')} | "
            f"{row.get('opset', '')} | {row.get('convert_s', '')} | {row.get('validate_s', '')} | "
            f"{'' if row.get('detections') is None else row['detections']} | {_short(row['verdict'])} |"
        )
    return "\n".join(lines)


def _short(verdict: str, limit: int = 400) -> str:
    """A verdict for a table cell: one line, at most `limit` characters."""
    line = " ".join(verdict.split()).replace("|", "/")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="Run only the configs containing this text (repeatable).")
    parser.add_argument("--json", type=Path, help="Also write the rows as JSON here.")
    parser.add_argument("--timeout", type=float, default=1200, help="Seconds per config.")
    parser.add_argument("--one", nargs=2, metavar=("SPEC", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], Path(args.one[1]))))
        return
    configs = [spec for spec in CONFIGS if not args.only or any(text in spec for text in args.only)]
    rows = []
    for spec in configs:
        row = child(spec, args.timeout)
        rows.append(row)
        print(f"{spec}: {row['verdict'][:160]}", file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))
    passed = sum(row["verdict"] == "PASS" for row in rows)
    print(f"\npassed {passed} of {len(rows)} ({passed / len(rows):.0%}) with no manifest")


if __name__ == "__main__":
    main()
