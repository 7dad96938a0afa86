"""The model directory contract: what a model version in lakeFS (`{branch}/model/`) holds.

A model directory holds an OpenMMLab model config (`.py`), its checkpoint (`.pth`; plaintext here,
decrypted upstream when the source is encrypted) and a manifest (`manifest.yaml`) that says what the
model is and how to export it. docs/model-directory.md is the user-facing description.

Without a manifest, everything is inferred from the model config (and a `deploy_config.py` beside
it, if any); `ModelDir.inferred` lists what was inferred and it is logged, so nothing is silent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from edge_deploy import profiles
from edge_deploy.errors import EdgeDeployError

log = logging.getLogger(__name__)

MANIFEST_NAMES = ("manifest.yaml", "manifest.yml", "manifest.json")
# The deploy config a manifest-less directory may carry; with a manifest, any file name works.
DEPLOY_CONFIG_NAME = "deploy_config.py"
MANIFEST_VERSION = 1

# mmdeploy 1.3.1's rewriters and symbolic functions emit opset-11 operators (NonMaxSuppression,
# dynamic Resize/TopK/Range), so 11 is the floor. Its opset-aware code only distinguishes < 13 and
# >= 13 (Squeeze/Unsqueeze axes), and its own deploy configs stop at 17; opset 18 moved the axes of
# Reduce*/Split/Pad into inputs, which mmdeploy was never tested against. (ResNet-18 and RTMDet-tiny
# did export and run at 18 here; raise MAX_OPSET once the validation gate passes at that opset.)
MIN_OPSET = 11
MAX_OPSET = 17
DEFAULT_TARGETS = ("linux/amd64",)


class Task(StrEnum):
    CLASSIFICATION = "classification"
    DETECTION = "detection"
    SEGMENTATION = "segmentation"


CODEBASE_TASK = {
    "mmpretrain": Task.CLASSIFICATION,
    "mmdet": Task.DETECTION,
    "mmseg": Task.SEGMENTATION,
}
# mmdeploy's codebase_config.task for each task.
MMDEPLOY_TASK = {
    Task.CLASSIFICATION: "Classification",
    Task.DETECTION: "ObjectDetection",
    Task.SEGMENTATION: "Segmentation",
}


class ModelDirError(EdgeDeployError):
    """The model directory or its manifest is incomplete or wrong; the message names each field."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: list[int]  # NCHW, e.g. [1, 3, 224, 224]: the shape the model is exported (traced) at
    dynamic_axes: dict[int, str] = field(default_factory=dict)  # axis index -> name, e.g. {0: "batch"}
    dtype: str = "float32"

    @property
    def height_width(self) -> tuple[int, int]:
        return self.shape[2], self.shape[3]


@dataclass(frozen=True)
class Tolerances:
    """Parity tolerances for validation; fields left None fall back to the per-task defaults."""

    atol: float
    rtol: float
    # Task-level agreement the gate requires (fraction 0..1): top-1 labels for classification,
    # matched detections for detection, pixel argmax for segmentation.
    min_task_agreement: float | None = None


@dataclass(frozen=True)
class Manifest:
    task: Task
    codebase: str
    inputs: list[InputSpec]
    outputs: list[str]
    deploy_profile: str  # a built-in profile name or a deploy config file name in the directory
    opset: int
    targets: list[str]
    tolerances: Tolerances | None = None
    config: str | None = None  # model config file name; default: the only other `.py` file
    checkpoint: str | None = None  # checkpoint file name; default: the only `.pth` file

    def to_dict(self) -> dict[str, Any]:
        """The manifest as written to `manifest.yaml` (only the fields that are set)."""
        data = asdict(self)
        data["task"] = self.task.value
        data = {"version": MANIFEST_VERSION, **data}
        return {key: value for key, value in data.items() if value is not None}


@dataclass(frozen=True)
class ModelDir:
    root: Path
    manifest: Manifest
    config_path: Path
    checkpoint_path: Path
    inferred: list[str]  # what was inferred (no manifest, or fields the manifest left out)
    deploy_config_path: Path  # the deploy config actually used: a built-in profile or a file here
    manifest_path: Path | None = None

    @property
    def profile_is_builtin(self) -> bool:
        return profiles.is_builtin(self.manifest.deploy_profile)


@contextlib.contextmanager
def atomic_directory(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging directory beside `final` that becomes `final` only if the block succeeds."""
    final = Path(final)
    if final.exists() and (not final.is_dir() or any(final.iterdir())) and not overwrite:
        raise EdgeDeployError(f"{final} exists and is not empty; choose a new directory (or overwrite it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield staging
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's 0700, made what mkdir would have made
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_manifest(root: Path, manifest: Manifest) -> Path:
    path = root / MANIFEST_NAMES[0]
    text = "# edge-deploy model manifest: see docs/model-directory.md\n"
    text += yaml.safe_dump(manifest.to_dict(), sort_keys=False, default_flow_style=None)
    path.write_text(text)
    return path


def load_model_dir(path: Path) -> ModelDir:
    """Read and check a model directory; a ModelDirError names every bad field at once."""
    root = Path(path).resolve()
    if not root.is_dir():
        raise ModelDirError(f"model directory {path} does not exist or is not a directory")
    manifest_path = _find_manifest(root)
    if manifest_path is None:
        model_dir = _infer_model_dir(root)
        log.info("%s has no manifest; inferred: %s", root.name, "; ".join(model_dir.inferred))
        return model_dir
    return _load_with_manifest(root, manifest_path)


def _find_manifest(root: Path) -> Path | None:
    found = [root / name for name in MANIFEST_NAMES if (root / name).is_file()]
    if len(found) > 1:
        raise ModelDirError(f"{root.name}: more than one manifest ({', '.join(p.name for p in found)}); keep one")
    return found[0] if found else None


# ---- with a manifest -------------------------------------------------------------------------


class _Problems:
    """Collects one message per bad field so the user fixes them all in one go."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, field_name: str, message: str) -> None:
        self.items.append(f"{field_name}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            listing = "\n  - ".join(self.items)
            raise ModelDirError(f"{self.source}: {len(self.items)} problem(s):\n  - {listing}")


_KNOWN_FIELDS = {
    "version",
    "task",
    "codebase",
    "inputs",
    "outputs",
    "deploy_profile",
    "opset",
    "targets",
    "tolerances",
    "config",
    "checkpoint",
}


def _read_manifest_file(manifest_path: Path) -> dict[str, Any]:
    try:
        text = manifest_path.read_text()
        data = json.loads(text) if manifest_path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ModelDirError(f"{manifest_path.name}: cannot be parsed: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelDirError(f"{manifest_path.name}: expected a mapping of fields, got {type(data).__name__}")
    return data


def _load_with_manifest(root: Path, manifest_path: Path) -> ModelDir:
    data = _read_manifest_file(manifest_path)
    problems = _Problems(f"{root.name}/{manifest_path.name}")
    inferred: list[str] = []
    for unknown in sorted(set(data) - _KNOWN_FIELDS):
        problems.add(unknown, f"unknown field; known fields: {', '.join(sorted(_KNOWN_FIELDS))}")
    version = data.get("version", MANIFEST_VERSION)
    if version != MANIFEST_VERSION:
        problems.add("version", f"{version!r} is not supported; this edge-deploy reads version {MANIFEST_VERSION}")

    codebase = _parse_codebase(data.get("codebase"), problems)
    task = _parse_task(data.get("task"), codebase, problems)
    opset = _parse_opset(data.get("opset"), problems)
    inputs = _parse_inputs(data.get("inputs"), problems)
    targets = _parse_targets(data.get("targets"), problems)
    tolerances = _parse_tolerances(data.get("tolerances"), problems)
    config_path = _pick_file(root, data.get("config"), "config", ".py", problems, exclude=_deploy_file_names(data))
    checkpoint_path = _pick_file(root, data.get("checkpoint"), "checkpoint", ".pth", problems)
    deploy_config_path = _resolve_profile(root, data.get("deploy_profile"), problems)
    problems.raise_if_any()

    deploy_cfg = profiles.load_profile(deploy_config_path)
    outputs = data.get("outputs")
    if outputs is None:
        outputs = list(deploy_cfg.onnx_config.output_names)
        inferred.append(f"outputs={outputs} (from the deploy profile)")
    else:
        outputs = _parse_outputs(outputs, problems)
    manifest = Manifest(
        task=task,
        codebase=codebase,
        inputs=inputs,
        outputs=outputs,
        deploy_profile=data["deploy_profile"],
        opset=opset,
        targets=targets,
        tolerances=tolerances,
        config=config_path.name,
        checkpoint=checkpoint_path.name,
    )
    check_against_profile(manifest, deploy_cfg, problems)
    problems.raise_if_any()
    if inferred:
        log.info("%s: manifest left out fields; inferred: %s", root.name, "; ".join(inferred))
    return ModelDir(root, manifest, config_path, checkpoint_path, inferred, deploy_config_path, manifest_path)


def _parse_codebase(value: Any, problems: _Problems) -> str:
    if value not in CODEBASE_TASK:
        problems.add("codebase", f"{value!r} is not one of {', '.join(CODEBASE_TASK)}")
    return value


def _parse_task(value: Any, codebase: str, problems: _Problems) -> Task:
    try:
        task = Task(value)
    except ValueError:
        problems.add("task", f"{value!r} is not one of {', '.join(t.value for t in Task)}")
        return Task.CLASSIFICATION
    expected = CODEBASE_TASK.get(codebase)
    if expected is not None and task is not expected:
        problems.add("task", f"{task.value!r} does not match codebase {codebase!r}, which does {expected.value}")
    return task


def _parse_opset(value: Any, problems: _Problems) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        problems.add("opset", f"{value!r} is not an integer ONNX opset ({MIN_OPSET}..{MAX_OPSET})")
        return MIN_OPSET
    check_opset(value, problems)
    return value


def check_opset(opset: int, problems: _Problems, field_name: str = "opset") -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        problems.add(
            field_name,
            f"ONNX opset {opset} is not supported: mmdeploy 1.3.1 exports opsets {MIN_OPSET}..{MAX_OPSET}",
        )


def _parse_inputs(value: Any, problems: _Problems) -> list[InputSpec]:
    if not isinstance(value, list) or not value:
        problems.add("inputs", "a list with one input, e.g. [{name: input, shape: [1, 3, 224, 224]}]")
        return []
    if len(value) != 1:
        problems.add(
            "inputs", f"{len(value)} inputs given; mmdeploy exports these codebases with exactly one image input"
        )
    return [_parse_input(item, f"inputs[{index}]", problems) for index, item in enumerate(value)]


def _parse_input(item: Any, where: str, problems: _Problems) -> InputSpec:
    if not isinstance(item, dict):
        problems.add(where, "a mapping with name, shape and (optional) dynamic_axes")
        return InputSpec("input", [])
    for unknown in sorted(set(item) - {"name", "shape", "dynamic_axes", "dtype"}):
        problems.add(f"{where}.{unknown}", "unknown field; known: name, shape, dynamic_axes, dtype")
    name = item.get("name", "input")
    if not isinstance(name, str) or not name:
        problems.add(f"{where}.name", f"{name!r} is not a non-empty string")
    shape = item.get("shape")
    if not _is_nchw_shape(shape):
        problems.add(f"{where}.shape", f"{shape!r} is not an NCHW shape of 4 positive integers, e.g. [1, 3, 224, 224]")
        shape = []
    dynamic_axes = _parse_dynamic_axes(item.get("dynamic_axes") or {}, f"{where}.dynamic_axes", problems)
    dtype = item.get("dtype", "float32")
    if dtype != "float32":
        problems.add(f"{where}.dtype", f"{dtype!r} is not supported; mmdeploy exports float32 image inputs")
    return InputSpec(name, list(shape), dynamic_axes, dtype)


def _is_nchw_shape(shape: Any) -> bool:
    return (
        isinstance(shape, list)
        and len(shape) == 4
        and all(isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 for dim in shape)
    )


def _parse_dynamic_axes(value: Any, where: str, problems: _Problems) -> dict[int, str]:
    if not isinstance(value, dict):
        problems.add(where, f"{value!r} is not a mapping of axis index to name, e.g. {{0: batch}}")
        return {}
    axes: dict[int, str] = {}
    for key, name in value.items():
        axis = int(key) if isinstance(key, str) and key.isdigit() else key
        if not isinstance(axis, int) or not 0 <= axis <= 3:
            problems.add(where, f"axis {key!r} is not an NCHW axis index 0..3")
        elif not isinstance(name, str) or not name:
            problems.add(f"{where}.{axis}", f"{name!r} is not an axis name such as batch, height or width")
        else:
            axes[axis] = name
    return dict(sorted(axes.items()))


def _parse_outputs(value: Any, problems: _Problems) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(name, str) and name for name in value):
        problems.add("outputs", f"{value!r} is not a list of output names, e.g. [dets, labels]")
        return []
    return value


def _parse_targets(value: Any, problems: _Problems) -> list[str]:
    if value is None:
        return list(DEFAULT_TARGETS)
    if not isinstance(value, list) or not value or not all(isinstance(target, str) and target for target in value):
        problems.add("targets", f"{value!r} is not a list of device classes or OCI platforms, e.g. [linux/arm64]")
        return []
    return value


def _parse_tolerances(value: Any, problems: _Problems) -> Tolerances | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add("tolerances", f"{value!r} is not a mapping with atol, rtol (and optional min_task_agreement)")
        return None
    for unknown in sorted(set(value) - {"atol", "rtol", "min_task_agreement"}):
        problems.add(f"tolerances.{unknown}", "unknown field; known: atol, rtol, min_task_agreement")
    atol = _non_negative_float(value.get("atol"), "tolerances.atol", problems)
    rtol = _non_negative_float(value.get("rtol"), "tolerances.rtol", problems)
    agreement = value.get("min_task_agreement")
    if agreement is not None:
        agreement = _non_negative_float(agreement, "tolerances.min_task_agreement", problems)
        if agreement > 1:
            problems.add("tolerances.min_task_agreement", f"{agreement} is a fraction and must be at most 1")
    return Tolerances(atol, rtol, agreement)


def _non_negative_float(value: Any, where: str, problems: _Problems) -> float:
    # PyYAML reads `1e-4` (no dot) as a string, so numeric strings are accepted.
    try:
        number = float(value)
    except (TypeError, ValueError):
        problems.add(where, f"{value!r} is not a number")
        return 0.0
    if number < 0 or number != number:
        problems.add(where, f"{value!r} must be a non-negative number")
    return number


def _deploy_file_names(data: dict[str, Any]) -> set[str]:
    profile = data.get("deploy_profile")
    names = {DEPLOY_CONFIG_NAME}
    if isinstance(profile, str) and profile.endswith(".py"):
        names.add(Path(profile).name)
    return names


def _pick_file(
    root: Path, named: Any, field_name: str, suffix: str, problems: _Problems, exclude: set[str] = frozenset()
) -> Path:
    """The file the manifest names, or the only file with `suffix` when it names none."""
    if named is not None:
        if not isinstance(named, str) or not named or Path(named).name != named:
            problems.add(field_name, f"{named!r} is not a file name in the model directory")
            return root / "missing"
        if not (root / named).is_file():
            problems.add(field_name, f"{named} does not exist in the model directory")
        return root / named
    candidates = sorted(p for p in root.glob(f"*{suffix}") if p.is_file() and p.name not in exclude)
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        problems.add(field_name, f"expected exactly one {suffix} file (found: {found}); name it with `{field_name}:`")
        return root / "missing"
    return candidates[0]


def _resolve_profile(root: Path, value: Any, problems: _Problems) -> Path:
    if not isinstance(value, str) or not value:
        problems.add(
            "deploy_profile",
            f"{value!r}: name a built-in profile ({', '.join(profiles.available_profiles())}) "
            "or a deploy config file in the model directory",
        )
        return root / "missing"
    if value.endswith(".py"):
        if Path(value).name != value or not (root / value).is_file():
            problems.add("deploy_profile", f"deploy config file {value} does not exist in the model directory")
        return root / value
    try:
        return profiles.profile_path(value)
    except profiles.UnknownProfileError as exc:
        problems.add("deploy_profile", f"{exc}; or name a deploy config file (.py) in the model directory")
        return root / "missing"


def check_against_profile(manifest: Manifest, deploy_cfg, problems: _Problems) -> None:
    """The manifest's IO must be what the deploy config exports; a mismatch would ship a surprise."""
    onnx_cfg = deploy_cfg.get("onnx_config") or deploy_cfg.get("ir_config") or {}
    codebase_cfg = deploy_cfg.get("codebase_config") or {}
    backend = (deploy_cfg.get("backend_config") or {}).get("type")
    where = f"deploy profile {manifest.deploy_profile}"
    if backend != "onnxruntime":
        problems.add("deploy_profile", f"{where} targets backend {backend!r}; edge-deploy ships onnxruntime models")
    if codebase_cfg.get("type") != manifest.codebase:
        problems.add("codebase", f"{manifest.codebase!r} but {where} is for {codebase_cfg.get('type')!r}")
    if codebase_cfg.get("task") != MMDEPLOY_TASK.get(manifest.task):
        problems.add("task", f"{manifest.task.value!r} but {where} exports task {codebase_cfg.get('task')!r}")
    input_names = list(onnx_cfg.get("input_names") or [])
    if [spec.name for spec in manifest.inputs] != input_names:
        problems.add("inputs", f"names {[spec.name for spec in manifest.inputs]} but {where} exports {input_names}")
    output_names = list(onnx_cfg.get("output_names") or [])
    if manifest.outputs != output_names:
        problems.add("outputs", f"{manifest.outputs} but {where} exports {output_names}")
    profile_axes = profile_dynamic_axes(deploy_cfg)
    for index, spec in enumerate(manifest.inputs):
        declared = profile_axes.get(spec.name, {})
        if spec.dynamic_axes != declared:
            problems.add(
                f"inputs[{index}].dynamic_axes",
                f"{spec.dynamic_axes or 'none'} but {where} makes {declared or 'none'} dynamic; "
                "pick the static/dynamic profile that matches, or change the manifest",
            )


def profile_dynamic_axes(deploy_cfg) -> dict[str, dict[int, str]]:
    """The deploy config's dynamic axes per tensor name, normalized to {axis index: name}."""
    onnx_cfg = deploy_cfg.get("onnx_config") or deploy_cfg.get("ir_config") or {}
    raw = onnx_cfg.get("dynamic_axes") or {}
    axes: dict[str, dict[int, str]] = {}
    for tensor, spec in raw.items():
        if isinstance(spec, dict):
            axes[tensor] = {int(axis): str(name) for axis, name in sorted(spec.items(), key=lambda kv: int(kv[0]))}
        else:  # mmdeploy also accepts a list of axis indices
            axes[tensor] = {int(axis): f"{tensor}_dim{axis}" for axis in spec}
    return axes


# ---- without a manifest ----------------------------------------------------------------------


def _infer_model_dir(root: Path) -> ModelDir:
    problems = _Problems(f"{root.name} (no manifest: inferring from the model config)")
    inferred: list[str] = []
    has_deploy_file = (root / DEPLOY_CONFIG_NAME).is_file()
    config_path = _pick_file(root, None, "config", ".py", problems, exclude={DEPLOY_CONFIG_NAME})
    checkpoint_path = _pick_file(root, None, "checkpoint", ".pth", problems)
    problems.raise_if_any()
    inferred.append(f"config={config_path.name}, checkpoint={checkpoint_path.name} (the only such files)")

    model_cfg = _load_model_config(config_path)
    codebase, how = infer_codebase(model_cfg)
    if codebase is None:
        problems.add("codebase", f"cannot infer it from {config_path.name} ({how}); write a manifest")
        problems.raise_if_any()
    task = CODEBASE_TASK[codebase]
    inferred.append(f"codebase={codebase} ({how}), task={task.value}")

    if has_deploy_file:
        profile_name = DEPLOY_CONFIG_NAME
        deploy_config_path = root / DEPLOY_CONFIG_NAME
        inferred.append(f"deploy_profile={DEPLOY_CONFIG_NAME} (found in the directory)")
    else:
        profile_name = profiles.default_profile(task.value)
        deploy_config_path = profiles.profile_path(profile_name)
        inferred.append(f"deploy_profile={profile_name} (built-in default for {task.value})")
    deploy_cfg = profiles.load_profile(deploy_config_path)
    onnx_cfg = deploy_cfg.onnx_config

    opset = int(onnx_cfg.get("opset_version", MIN_OPSET))
    check_opset(opset, problems, f"{profile_name}: onnx_config.opset_version")
    height_width, shape_source = _infer_height_width(model_cfg, onnx_cfg)
    if height_width is None:
        problems.add("inputs", f"cannot infer the input shape: {shape_source}; write a manifest with inputs[0].shape")
    problems.raise_if_any()
    inferred.append(f"opset={opset} (from the deploy profile)")
    inferred.append(f"input shape 1x3x{height_width[0]}x{height_width[1]} ({shape_source})")
    inferred.append(f"targets={list(DEFAULT_TARGETS)} (default)")

    input_name = onnx_cfg.input_names[0]
    dynamic_axes = profile_dynamic_axes(deploy_cfg).get(input_name, {})
    manifest = Manifest(
        task=task,
        codebase=codebase,
        inputs=[InputSpec(input_name, [1, 3, *height_width], dynamic_axes)],
        outputs=list(onnx_cfg.output_names),
        deploy_profile=profile_name,
        opset=opset,
        targets=list(DEFAULT_TARGETS),
        tolerances=None,
        config=config_path.name,
        checkpoint=checkpoint_path.name,
    )
    check_against_profile(manifest, deploy_cfg, problems)
    problems.raise_if_any()
    return ModelDir(root, manifest, config_path, checkpoint_path, inferred, deploy_config_path, None)


def _load_model_config(config_path: Path):
    from mmengine.config import Config

    try:
        return Config.fromfile(str(config_path))
    except Exception as exc:  # mmengine raises many types for a bad config file
        raise ModelDirError(f"{config_path.name}: cannot load the model config: {type(exc).__name__}: {exc}") from exc


def infer_codebase(model_cfg) -> tuple[str | None, str]:
    """The codebase from `default_scope`, else by finding `model.type` in each codebase's registry."""
    scope = model_cfg.get("default_scope")
    if scope in CODEBASE_TASK:
        return scope, f"default_scope={scope}"
    model_type = (model_cfg.get("model") or {}).get("type")
    if not model_type:
        return None, "no default_scope and no model.type"
    import importlib

    from edge_deploy.mmdeploy_support import ensure_torchvision_importable

    ensure_torchvision_importable()  # mmpretrain's registry imports torchvision
    for codebase in CODEBASE_TASK:
        registry = importlib.import_module(f"{codebase}.registry").MODELS
        if registry.get(model_type) is not None:
            return codebase, f"model.type={model_type} is registered in {codebase}"
    return None, f"model.type={model_type} is in none of {', '.join(CODEBASE_TASK)}"


def _infer_height_width(model_cfg, onnx_cfg) -> tuple[tuple[int, int] | None, str]:
    """(H, W) from the deploy config's input_shape, else from the test pipeline's last sizing step."""
    input_shape = onnx_cfg.get("input_shape")
    if input_shape:
        width, height = input_shape
        return (int(height), int(width)), "deploy config onnx_config.input_shape"
    pipeline = _test_pipeline(model_cfg)
    if pipeline is None:
        return None, "the model config has no test pipeline"
    found: tuple[int, int] | None = None
    source = "no fixed-size Resize/CenterCrop/Pad step in the test pipeline"
    for step in pipeline:
        size = _step_output_size(step)
        if size is not None:
            found, source = size, f"test pipeline {step['type']}"
    return found, source


def _test_pipeline(model_cfg) -> list | None:
    loader = model_cfg.get("test_dataloader") or {}
    dataset = loader.get("dataset") or {}
    while "pipeline" not in dataset and isinstance(dataset.get("dataset"), dict):
        dataset = dataset["dataset"]  # wrappers such as RepeatDataset
    return dataset.get("pipeline") or model_cfg.get("test_pipeline")


def _step_output_size(step: dict) -> tuple[int, int] | None:
    """(H, W) a pipeline step fixes; OpenMMLab sizes are (w, h) or a single int."""
    kind = step.get("type", "")
    if kind == "CenterCrop":
        return _hw(step.get("crop_size"))
    if kind in ("Resize", "mmdet.Resize", "mmseg.Resize") and step.get("scale") is not None:
        return _hw(step["scale"])
    if kind in ("Pad", "mmdet.Pad") and step.get("size") is not None:
        return _hw(step["size"])
    return None


def _hw(size: Any) -> tuple[int, int] | None:
    if isinstance(size, int):
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size):
        width, height = size
        return height, width
    return None
