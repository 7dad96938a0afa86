"""Sweep: configs the installed OpenMMLab codebases ship, converted with no manifest and validated.

    .venv/bin/python benchmarks/conversion_sweep.py [--only SUBSTRING ...] [--json OUT.json] [--timeout 1200]
                                                    [--answers] [--no-gate]

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

--answers: then the edge runtime serves the converted directory (as `edge-deploy runtime` does) and
its /v1/predict answers to six real photos (matplotlib's and scikit-image's, one turned upright)
are compared with the codebase's own inference API on the PyTorch model, with the acceptance
stage's rules (edge_deploy.acceptance.compare): top-1 and top-5 set, every detection matched by
label with box IoU >= 0.95 (mask IoU >= 0.9), >= 99 % of pixels. Random weights leave a detector's
scores near their prior, so the detectors' test_cfg score_thr is lowered to 0.001 (for PyTorch and
the export alike) and the top `TOP_DETECTIONS` untied detections of each photo are compared,
whatever their scores. --no-gate skips the validation gate (the answers take a fraction of its time).
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

TOP_DETECTIONS = 20
LOW_SCORE_THRESHOLD = 0.001
PORTRAIT = "rocket-upright.jpg"  # a landscape photo turned: keep-ratio resizing and padding the other way

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


def run_one(spec: str, work: Path, *, gate: bool = True, answers: bool = False) -> dict:
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
    if answers:
        lower_score_thresholds(model_root)
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
    if answers:
        row |= answers_on_photos(model_dir, work / "onnx")
    if not gate:
        return row | {"verdict": "PASS (converted; gate not run)"}
    started = time.perf_counter()
    try:
        report = validate(model_dir, work / "onnx")
    except ValidationFailed as failure:
        report = failure.report
    row["validate_s"] = round(time.perf_counter() - started, 1)
    row["verdict"] = "PASS" if report.passed else f"FAIL: {report.failure.replace(str(work), '<work>')}"
    row["detections"] = _detections_compared(report)
    return row


def lower_score_thresholds(model_root: Path) -> None:
    """Every `score_thr` of the config's test_cfg lowered to `LOW_SCORE_THRESHOLD`: random weights
    score every box near the class prior (about 0.01), below mmdet's usual 0.05, which would leave
    nothing to compare. PyTorch and the export both follow the config, so they still see one model."""
    from mmengine.config import Config

    path = next(p for p in model_root.glob("*.py") if p.name != "deploy_config.py")
    config = Config.fromfile(str(path))
    if config.model.get("type") in ("SOLO", "SOLOv2"):
        return  # their NMS makes a full-size mask per candidate: at 0.001, 7 GB and over 20 minutes

    def lower(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "score_thr" and isinstance(value, float):
                    node[key] = min(value, LOW_SCORE_THRESHOLD)
                else:
                    lower(value)

    lower(config.model.get("test_cfg"))
    config.dump(str(path))


def sweep_photos() -> list:
    """The gate's built-in photos (a JPEG and a PNG) and four of scikit-image's, sent as JPEG."""
    import io

    from PIL import Image
    from skimage import data

    from edge_deploy.acceptance.photos import Photo, builtin_photos

    def jpeg(pixels) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=92)
        return buffer.getvalue()

    found = builtin_photos()
    for name in ("astronaut", "coffee", "chelsea"):
        found.append(Photo(f"{name}.jpg", "image/jpeg", jpeg(getattr(data, name)())))
    found.append(Photo(PORTRAIT, "image/jpeg", jpeg(data.rocket().transpose(1, 0, 2).copy())))
    return found


def answers_on_photos(model_dir, onnx_dir: Path) -> dict:
    """The runtime's /v1/predict answers on `sweep_photos()` against the codebase's inference API."""
    from edge_deploy.acceptance.compare import QUERY_MARGIN, compare_answer
    from edge_deploy.acceptance.reference import TIE, reference_answers
    from edge_deploy.errors import EdgeDeployError
    from edge_deploy.runtime.codecs.images import decode_frame
    from edge_deploy.runtime.config import RuntimeConfig
    from edge_deploy.runtime.dataplane import DataPlane, PredictOptions
    from edge_deploy.runtime.model import load_model

    task = model_dir.manifest.task.value
    started = time.perf_counter()
    serving_path = onnx_dir / "serving.json"
    pipeline = json.loads(serving_path.read_text()).get("transforms") if serving_path.is_file() else None
    photos = sweep_photos()
    try:
        reference = reference_answers(
            task, model_dir.config_path, model_dir.checkpoint_path, photos, pipeline, detection_floor=0.0
        )
    except Exception as exc:  # the codebase's API itself cannot answer: no comparison, said so
        return {"answers": f"no reference: {type(exc).__name__}: {str(exc)[:200]}"}
    config = RuntimeConfig.from_env({"EDGE_MODEL_DIR": str(onnx_dir)})
    try:
        plane = DataPlane.open(config, load_model(config))
    except EdgeDeployError as exc:  # what the gate would have refused (e.g. an operator ORT lacks)
        return {"answers": f"the runtime does not start: {str(exc)[:200]}"}
    agreed, compared, tied, failures = 0, 0, 0, []
    for photo, expected in zip(photos, reference.answers, strict=True):
        threshold = _top_detections_floor(expected.answer.get("detections"))
        options = PredictOptions(top_k=5) if task == "classification" else PredictOptions()
        if threshold is not None:
            options = PredictOptions(score_threshold=max(0.0, threshold - QUERY_MARGIN), max_detections=1000)
        try:
            answer = plane.predict(decode_frame(photo.body, photo.media_type, config.limits.max_image_pixels), options)
        except Exception as exc:
            failures.append(f"{photo.name}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        agreement = compare_answer(task, expected, answer, detection_threshold=threshold or 1.0)
        scores = [entry["score"] for entry in expected.answer.get("classes", [])]
        tied += len(scores) > 1 and scores[0] - scores[1] < TIE  # a top-1 the tie rule lets go either way
        agreed += agreement.passed
        compared += agreement.compared if task != "segmentation" else 0
        if not agreement.passed:
            failures.append(f"{photo.name}: {agreement.detail}")
    row = {"answers": f"{agreed}/{len(photos)}", "answers_s": round(time.perf_counter() - started, 1)}
    row["answers_agree"] = agreed == len(photos)
    if task in ("detection", "instance-segmentation"):
        row["answers"] += f" ({compared} detections)"
    if tied:
        row["answers"] += f" ({tied} with a tied top-1)"
    return row | ({"answers_failure": failures[0]} if failures else {})


def _top_detections_floor(detections: list | None) -> float | None:
    """The score of the `TOP_DETECTIONS`-th untied reference detection (all of them when fewer)."""
    if detections is None:
        return None
    untied = sorted((d["score"] for d in detections if not d["tied"]), reverse=True)
    return untied[min(TOP_DETECTIONS, len(untied)) - 1] if untied else None


def _detections_compared(report) -> int | None:
    if report.parity is None:  # the gate stopped before parity (structure or runtime)
        return None
    counts = [case.task.metrics.get("reference_detections") for case in report.parity.cases if case.task]
    counts = [count for count in counts if count is not None]
    return int(sum(counts)) if counts else None


def child(spec: str, timeout: float, flags: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="sweep-") as scratch:
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--one", spec, scratch, *flags],
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
    answers = any("answers" in row for row in rows)
    head = "| config | task | inferred shape, profile | opset | convert s | validate s | dets | verdict |"
    head += " answers on photos | answers s |" if answers else ""
    lines = [head, "|---" * head.count(" |") + "|"]
    for row in rows:
        line = (
            f"| {row['config']} | {row.get('task', '')} | {row.get('shape', '')} {row.get('profile', '')} | "
            f"{row.get('opset', '')} | {row.get('convert_s', '')} | {row.get('validate_s', '')} | "
            f"{'' if row.get('detections') is None else row['detections']} | {_short(row['verdict'])} |"
        )
        if answers:
            failure = f": {_short(row['answers_failure'], 200)}" if "answers_failure" in row else ""
            line += f" {row.get('answers', '')}{failure} | {row.get('answers_s', '')} |"
        lines.append(line)
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
    parser.add_argument("--answers", action="store_true", help="Compare the runtime's answers with PyTorch's.")
    parser.add_argument("--no-gate", dest="gate", action="store_false", help="Do not run the validation gate.")
    parser.add_argument("--one", nargs=2, metavar=("SPEC", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], Path(args.one[1]), gate=args.gate, answers=args.answers)))
        return
    flags = ["--answers"] * args.answers + ["--no-gate"] * (not args.gate)
    configs = [spec for spec in CONFIGS if not args.only or any(text in spec for text in args.only)]
    rows = []
    for spec in configs:
        row = child(spec, args.timeout, flags)
        rows.append(row)
        print(f"{spec}: {row['verdict'][:160]} {row.get('answers', '')}", file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))
    passed = sum(row["verdict"].startswith("PASS") for row in rows)
    print(f"\npassed {passed} of {len(rows)} ({passed / len(rows):.0%}) with no manifest")
    if args.answers:
        agreed = sum(row.get("answers_agree", False) for row in rows)
        print(f"answers agreed with PyTorch on every photo: {agreed} of {len(rows)} ({agreed / len(rows):.0%})")


if __name__ == "__main__":
    main()
