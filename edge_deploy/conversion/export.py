"""Conversion: a model directory to `end2end.onnx` plus MMDeploy's SDK metadata, in-process.

MMDeploy's own `torch2onnx` runs under `mmdeploy_environment()` (TorchScript exporter, so its
rewriters apply), then `export2SDK` writes deploy.json, pipeline.json and detail.json. Every
failure is a ConversionError naming the stage (config load, model build, checkpoint load, export,
SDK metadata) and the root exception, never MMDeploy's bare "torch2onnx failed". The output
directory appears complete or not at all (written beside it, then renamed).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from edge_deploy.conversion import profiles
from edge_deploy.conversion.checkpoint import strict_checkpoint_loading
from edge_deploy.conversion.contract import MAX_OPSET, MIN_OPSET, ModelDir
from edge_deploy.conversion.environment import export_adaptations, mmdeploy_environment
from edge_deploy.conversion.errors import ConversionError, describe, describe_export_failure
from edge_deploy.conversion.memory import peak_rss
from edge_deploy.conversion.openmmlab import load_configs
from edge_deploy.conversion.result import RESULT_FILE, ConversionResult, as_exported
from edge_deploy.errors import EdgeDeployError
from edge_deploy.files import ONNX_FILE_NAME, atomic_directory, sha256_file

log = logging.getLogger(__name__)

SDK_FILES = ("deploy.json", "pipeline.json", "detail.json")
DEPLOY_CONFIG_COPY = "deploy_config.py"
# Seed of the synthetic image the exporter traces with (its pixel values do not change the graph).
TRACE_IMAGE_SEED = 0


SizeCheck = Callable[[ModelDir, Path], "str | None"]


def convert(
    model_dir: ModelDir, out_dir: Path, overwrite: bool = False, size_check: SizeCheck | None = None
) -> ConversionResult:
    """Convert `model_dir` into `out_dir` (end2end.onnx, SDK json files, deploy config, result).

    What the manifest leaves open is chosen here and recorded in conversion.json (`manifest`, and why
    in `opset_reason` / `profile_reason`): when the exporter says an operator needs a newer opset
    (within MIN_OPSET..MAX_OPSET), the export runs once more at that opset; when inference chose a
    dynamic profile and `size_check(model_dir, onnx_dir)` finds a problem with the export at other
    sizes, the static profile at the same size is exported instead. Callers above both packages pass
    the validation gate's `other_sizes_problem` (runs and agrees with PyTorch at the gate's other
    sizes: adaptive pooling can freeze a size and still run); without one, `fails_at_another_size`
    (ONNX Runtime runs it at 3/4 of the traced height and width).
    """
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, replace=overwrite) as staging:
        result = _export_choosing_profile(model_dir, staging, size_check)
        # The file keeps the ONNX path relative to itself: no machine paths in published metadata.
        (staging / RESULT_FILE).write_text(replace(result, onnx_path=ONNX_FILE_NAME).to_json() + "\n")
    result = replace(result, onnx_path=str(out_dir.resolve() / ONNX_FILE_NAME))
    log.info(
        "converted %s: %s (%.1f MB) in %.1f s, peak RSS %.0f MB",
        model_dir.root.name,
        out_dir / ONNX_FILE_NAME,
        result.size_bytes / 1e6,
        result.seconds,
        result.peak_rss_mb,
    )
    return result


def _export_choosing_profile(model_dir: ModelDir, staging: Path, size_check: SizeCheck | None) -> ConversionResult:
    result = _export_choosing_opset(model_dir, staging)
    spec = model_dir.manifest.inputs[0]
    if model_dir.profile_pinned or not {2, 3} <= set(spec.dynamic_axes):
        return result
    exported = as_exported(model_dir, result)
    problem = (size_check or fails_at_another_size)(exported, staging)
    if problem is None:
        return result
    static = static_variant(exported)  # at the opset that worked
    log.info(
        "%s: the dynamic export %s; exporting with %s", model_dir.root.name, problem, static.manifest.deploy_profile
    )
    _empty(staging)
    reason = (
        f"{model_dir.manifest.deploy_profile} (inferred) exported a model that {problem}: "
        f"{static.manifest.deploy_profile} at {'x'.join(map(str, spec.shape))} instead"
    )
    return replace(_export_choosing_opset(static, staging), profile_reason=reason, opset_reason=result.opset_reason)


def _export_choosing_opset(model_dir: ModelDir, staging: Path) -> ConversionResult:
    try:
        result = _convert_into(model_dir, staging)
    except ConversionError as exc:
        needed = None if model_dir.opset_pinned else required_opset(str(exc), model_dir.manifest.opset)
        if needed is None:
            raise
        log.info("%s: %s; exporting again at opset %d", model_dir.root.name, exc, needed)
        _empty(staging)
        raised = dataclasses.replace(model_dir, manifest=dataclasses.replace(model_dir.manifest, opset=needed))
        reason = f"opset {model_dir.manifest.opset} (the deploy profile's) failed: {exc}"
        return replace(_convert_into(raised, staging), opset_reason=reason)
    return result


def static_variant(model_dir: ModelDir) -> ModelDir:
    """`model_dir` with its task's static built-in profile, at the same input size."""
    manifest = model_dir.manifest
    name = profiles.default_profile(manifest.task.value, dynamic=False)
    inputs = [dataclasses.replace(spec, dynamic_axes={}) for spec in manifest.inputs]
    return dataclasses.replace(
        model_dir,
        manifest=dataclasses.replace(manifest, deploy_profile=name, inputs=inputs),
        deploy_config_path=profiles.profile_path(name),
        profile_pinned=True,
    )


def fails_at_another_size(model_dir: ModelDir, onnx_dir: Path) -> str | None:
    """How ONNX Runtime fails to run the export in `onnx_dir` at 3/4 of the traced height and width,
    or None when it runs (or when it cannot be opened here at all, which the validation gate reports).
    The size check when the caller gives none: it cannot tell a model that runs but computes otherwise."""
    import numpy as np
    import onnxruntime

    spec = model_dir.manifest.inputs[0]
    onnx_path = Path(onnx_dir) / ONNX_FILE_NAME
    batch, channels, height, width = spec.shape
    smaller = [batch, channels, *(max(32, round(side * 0.75 / 32) * 32) for side in (height, width))]
    try:
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception:  # custom ops not loaded here: the gate opens it properly
        return None
    feeds = {spec.name: np.random.default_rng(0).standard_normal(smaller, dtype=np.float32)}
    try:
        session.run(None, feeds)
    except Exception as exc:  # onnxruntime's error types share no base class
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"does not run at {'x'.join(map(str, smaller))} ({first[:300]})"
    return None


# torch's exporter: "Support for this operator was added in version 13, try exporting with this
# version", "... opset version 13 is required", "Unsupported: ONNX export of ... in opset 11 ...".
_OPSET_MENTION = re.compile(r"(?:added in|in|with|requires?|required|opset)\s+(?:opset\s+)?(?:version\s+)?(\d{1,2})\b")


def required_opset(message: str, current: int) -> int | None:
    """The newest opset an exporter error names, if it is above `current` and one mmdeploy exports."""
    named = [int(number) for number in _OPSET_MENTION.findall(message)]
    candidates = [opset for opset in named if current < opset <= MAX_OPSET and opset >= MIN_OPSET]
    return max(candidates, default=None)


def _empty(directory: Path) -> None:
    for entry in directory.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _convert_into(model_dir: ModelDir, work_dir: Path) -> ConversionResult:
    stages: dict[str, float] = {}
    started = time.perf_counter()
    with peak_rss() as memory:
        with _stage("config load", stages):
            deploy_cfg, model_cfg = load_configs(model_dir)
            pristine_cfg = copy.deepcopy(model_cfg)  # MMDeploy's SDK export edits the test pipeline in place
        from edge_deploy.conversion.serving import write_serving_recipe  # numpy: not in the builder image

        with mmdeploy_environment():
            _export_onnx(model_dir, deploy_cfg, model_cfg, work_dir, stages)
            with _stage("SDK metadata", stages):
                _export_sdk_metadata(model_dir, deploy_cfg, model_cfg, work_dir)
            with _stage("serving recipe", stages):
                write_serving_recipe(model_dir, deploy_cfg, pristine_cfg, work_dir)
        deploy_cfg.dump(str(work_dir / DEPLOY_CONFIG_COPY))
    seconds = time.perf_counter() - started
    onnx_path = work_dir / ONNX_FILE_NAME
    inputs, outputs = onnx_signature(onnx_path)
    check_signature(model_dir, inputs, outputs)
    import mmdeploy
    import torch

    return ConversionResult(
        onnx_path=str(onnx_path),
        sha256=sha256_file(onnx_path),
        size_bytes=onnx_path.stat().st_size,
        opset=model_dir.manifest.opset,
        inputs=inputs,
        outputs=outputs,
        deploy_profile=model_dir.manifest.deploy_profile,
        mmdeploy_version=mmdeploy.__version__,
        torch_version=torch.__version__,
        seconds=round(seconds, 3),
        peak_rss_mb=round(memory.peak_mb, 1),
        sdk_files=[name for name in SDK_FILES if (work_dir / name).is_file()],
        task=model_dir.manifest.task.value,
        codebase=model_dir.manifest.codebase,
        config_sha256=sha256_file(model_dir.config_path),
        checkpoint_sha256=sha256_file(model_dir.checkpoint_path),
        peak_rss_method=memory.method,
        stage_seconds={name: round(value, 3) for name, value in stages.items()},
        inferred=list(model_dir.inferred),
        manifest=json.dumps(model_dir.manifest.to_dict(), sort_keys=True),
    )


@contextlib.contextmanager
def _stage(name: str, stages: dict[str, float]) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    except ConversionError:
        raise
    except EdgeDeployError:
        raise
    except Exception as exc:
        raise ConversionError(name, describe(exc)) from exc
    finally:
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - started


class _LoadTracker:
    """Tells a failure inside torch2onnx apart: before the checkpoint loaded (build) or after (export)."""

    def __init__(self) -> None:
        self.loaded_at: float | None = None

    def __call__(self) -> None:
        self.loaded_at = time.perf_counter()


def _export_onnx(model_dir: ModelDir, deploy_cfg, model_cfg, work_dir: Path, stages: dict[str, float]) -> None:
    started = time.perf_counter()  # the first conversion in a process also pays for importing mmdeploy
    import torch
    from mmdeploy.apis import torch2onnx

    tracker = _LoadTracker()
    images = trace_images(model_dir)
    try:
        with (
            export_adaptations(deploy_cfg),
            strict_checkpoint_loading(on_loaded=tracker),
            warnings.catch_warnings(),
        ):
            # mmdeploy's rewriters read tensor sizes as Python numbers on purpose (static export);
            # the tracer flags each one. The validation gate checks the result instead.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # Copies: mmdeploy's mmdet input builder edits the test pipeline in place, which
            # would break the SDK metadata export that reads the same config afterwards.
            torch2onnx(
                images if len(images) > 1 else images[0],
                str(work_dir),
                ONNX_FILE_NAME,
                copy.deepcopy(deploy_cfg),
                copy.deepcopy(model_cfg),
                str(model_dir.checkpoint_path),
                device="cpu",
            )
    except ConversionError:
        raise
    except Exception as exc:
        stage = "export" if tracker.loaded_at is not None else "model build"
        raise ConversionError(stage, describe_export_failure(exc)) from exc
    finally:
        ended = time.perf_counter()
        loaded = tracker.loaded_at or ended
        stages["model build + checkpoint load"] = loaded - started
        stages["export"] = ended - loaded
    if not (work_dir / ONNX_FILE_NAME).is_file():
        raise ConversionError("export", f"mmdeploy's torch2onnx returned without writing {ONNX_FILE_NAME}")


def trace_images(model_dir: ModelDir) -> list:
    """Seeded uint8 BGR images of the manifest's size, one per batch item, for the exporter to trace."""
    import numpy as np

    spec = model_dir.manifest.inputs[0]
    batch, channels, height, width = spec.shape
    rng = np.random.default_rng(TRACE_IMAGE_SEED)
    return [rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8) for _ in range(batch)]


def _export_sdk_metadata(model_dir: ModelDir, deploy_cfg, model_cfg, work_dir: Path) -> None:
    from mmdeploy.backend.sdk.export_info import export2SDK

    export2SDK(deploy_cfg, model_cfg, str(work_dir), pth=model_dir.checkpoint_path.name, device="cpu")
    # detail.json records the model config's path; keep the file name only (no machine paths).
    detail_path = work_dir / "detail.json"
    detail = json.loads(detail_path.read_text())
    codebase = detail.get("codebase", {})
    if isinstance(codebase, dict) and codebase.get("config"):
        codebase["config"] = Path(str(codebase["config"])).name
    detail_path.write_text(json.dumps(detail, indent=4) + "\n")


def onnx_signature(onnx_path: Path) -> tuple[dict[str, list[int | str]], dict[str, list[int | str]]]:
    """Graph input and output shapes by name; a dynamic dimension is given by its name."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}

    def shape_of(value_info) -> list[int | str]:
        dims = value_info.type.tensor_type.shape.dim
        return [dim.dim_param if dim.dim_param else int(dim.dim_value) for dim in dims]

    inputs = {vi.name: shape_of(vi) for vi in model.graph.input if vi.name not in initializers}
    outputs = {vi.name: shape_of(vi) for vi in model.graph.output}
    return inputs, outputs


def check_signature(model_dir: ModelDir, inputs: dict[str, list], outputs: dict[str, list]) -> None:
    """The exported graph must have the manifest's names, static sizes and dynamic axes."""
    manifest = model_dir.manifest
    problems = []
    if list(inputs) != [spec.name for spec in manifest.inputs]:
        problems.append(f"inputs are {list(inputs)}, the manifest says {[spec.name for spec in manifest.inputs]}")
    if list(outputs) != manifest.outputs:
        problems.append(f"outputs are {list(outputs)}, the manifest says {manifest.outputs}")
    for spec in manifest.inputs:
        shape = inputs.get(spec.name)
        if shape is None:
            continue
        expected = [spec.dynamic_axes.get(axis, size) for axis, size in enumerate(spec.shape)]
        if shape != expected:
            problems.append(
                f"input {spec.name} has shape {shape}, the manifest says {expected} "
                f"(the model config's test pipeline decides the traced size; make them agree)"
            )
    if problems:
        raise ConversionError("export", "the exported graph does not match the manifest: " + "; ".join(problems))
