"""The validation gate on a large detector: Faster R-CNN R50-FPN at 800x1344, static, default settings.

    .venv/bin/python benchmarks/gate_large_detector.py

The shipped config with random weights (`edge-deploy sample --config`), a manifest pinning the
size MMDeploy's own static detection configs use (1x3x800x1344) and the static profile; then the
conversion and the gate with their defaults. Prints the seconds of each part of the gate: the
PyTorch reference, ONNX Runtime's parity runs, the timed runs (bounded by the time budget) and the
optimized copy, and the total.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

from edge_deploy.conversion import InputSpec, Manifest, Task, convert, load_model_dir
from edge_deploy.conversion.contract import write_manifest
from edge_deploy.samples import write_shipped_config
from edge_deploy.validation.gate import validate

CONFIG = "mmdet:faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"
SHAPE = [1, 3, 800, 1344]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as scratch:
        root = write_shipped_config(CONFIG, Path(scratch) / "model")
        config = next(root.glob("*.py")).name
        manifest = Manifest(
            task=Task.DETECTION,
            codebase="mmdet",
            inputs=[InputSpec("input", SHAPE)],
            outputs=["dets", "labels"],
            deploy_profile="detection_onnxruntime_static",
            opset=11,
            targets=["linux/amd64"],
            config=config,
            checkpoint=Path(config).with_suffix(".pth").name,
        )
        write_manifest(root, manifest)
        model_dir = load_model_dir(root)
        started = time.perf_counter()
        result = convert(model_dir, Path(scratch) / "onnx")
        convert_s = time.perf_counter() - started
        started = time.perf_counter()
        report = validate(model_dir, Path(scratch) / "onnx")
        gate_s = time.perf_counter() - started
    cases = report.parity.cases
    speed = report.speed
    print(f"{CONFIG} at {'x'.join(map(str, SHAPE))}: ONNX {result.size_bytes / 1e6:.0f} MB, convert {convert_s:.1f} s")
    print(f"gate: {'PASS' if report.passed else 'FAIL: ' + str(report.failure)} in {gate_s:.1f} s")
    print(f"  parity cases          {len(cases)}")
    print(f"  PyTorch reference     {sum(c.reference_seconds for c in cases):6.1f} s")
    print(f"  ONNX Runtime parity   {sum(c.onnx_seconds for c in cases):6.1f} s")
    print(
        f"  timed runs            {speed.timing_seconds:6.1f} s ({speed.timed_runs} runs, p50 {speed.p50_ms:.0f} ms, "
        f"stopped by the {speed.stopped_by} of {speed.time_budget_s:g} s)"
    )
    if report.optimization is not None:
        print(f"  optimized copy        {report.optimization.reason}")
    print(f"gate / 90 s target: {gate_s / 90:.2f}")


if __name__ == "__main__":
    main()
