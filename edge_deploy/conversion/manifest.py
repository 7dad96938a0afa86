"""A model directory's manifest, read and checked field by field and against its deploy profile.

The checks collect every problem before raising, so a ModelDirError names every bad field at once;
`inference` uses the same checks on the manifest it makes up.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from edge_deploy.conversion import profiles
from edge_deploy.conversion.contract import (
    CODEBASE_TASK,
    DEFAULT_TARGETS,
    DEPLOY_CONFIG_NAME,
    MANIFEST_NAMES,
    MANIFEST_VERSION,
    MAX_OPSET,
    MIN_OPSET,
    MMDEPLOY_TASK,
    InputSpec,
    Manifest,
    ModelDir,
    Task,
    Tolerances,
)
from edge_deploy.conversion.errors import ModelDirError

log = logging.getLogger(__name__)


def find_manifest(root: Path) -> Path | None:
    found = [root / name for name in MANIFEST_NAMES if (root / name).is_file()]
    if len(found) > 1:
        raise ModelDirError(f"{root.name}: more than one manifest ({', '.join(p.name for p in found)}); keep one")
    return found[0] if found else None


# ---- with a manifest -------------------------------------------------------------------------


class Problems:
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


def load_with_manifest(root: Path, manifest_path: Path) -> ModelDir:
    data = _read_manifest_file(manifest_path)
    problems = Problems(f"{root.name}/{manifest_path.name}")
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
    config_path = pick_file(root, data.get("config"), "config", ".py", problems, exclude=_deploy_file_names(data))
    checkpoint_path = pick_file(root, data.get("checkpoint"), "checkpoint", ".pth", problems)
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


def _parse_codebase(value: Any, problems: Problems) -> str:
    if value not in CODEBASE_TASK:
        problems.add("codebase", f"{value!r} is not one of {', '.join(CODEBASE_TASK)}")
    return value


def _parse_task(value: Any, codebase: str, problems: Problems) -> Task:
    try:
        task = Task(value)
    except ValueError:
        problems.add("task", f"{value!r} is not one of {', '.join(t.value for t in Task)}")
        return Task.CLASSIFICATION
    expected = CODEBASE_TASK.get(codebase)
    if expected is not None and task is not expected:
        problems.add("task", f"{task.value!r} does not match codebase {codebase!r}, which does {expected.value}")
    return task


def _parse_opset(value: Any, problems: Problems) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        problems.add("opset", f"{value!r} is not an integer ONNX opset ({MIN_OPSET}..{MAX_OPSET})")
        return MIN_OPSET
    check_opset(value, problems)
    return value


def check_opset(opset: int, problems: Problems, field_name: str = "opset") -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        problems.add(
            field_name,
            f"ONNX opset {opset} is not supported: mmdeploy 1.3.1 exports opsets {MIN_OPSET}..{MAX_OPSET}",
        )


def _parse_inputs(value: Any, problems: Problems) -> list[InputSpec]:
    if not isinstance(value, list) or not value:
        problems.add("inputs", "a list with one input, e.g. [{name: input, shape: [1, 3, 224, 224]}]")
        return []
    if len(value) != 1:
        problems.add(
            "inputs", f"{len(value)} inputs given; mmdeploy exports these codebases with exactly one image input"
        )
    return [_parse_input(item, f"inputs[{index}]", problems) for index, item in enumerate(value)]


def _parse_input(item: Any, where: str, problems: Problems) -> InputSpec:
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


def _parse_dynamic_axes(value: Any, where: str, problems: Problems) -> dict[int, str]:
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


def _parse_outputs(value: Any, problems: Problems) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(name, str) and name for name in value):
        problems.add("outputs", f"{value!r} is not a list of output names, e.g. [dets, labels]")
        return []
    return value


def _parse_targets(value: Any, problems: Problems) -> list[str]:
    if value is None:
        return list(DEFAULT_TARGETS)
    if not isinstance(value, list) or not value or not all(isinstance(target, str) and target for target in value):
        problems.add("targets", f"{value!r} is not a list of device classes or OCI platforms, e.g. [linux/arm64]")
        return []
    return value


def _parse_tolerances(value: Any, problems: Problems) -> Tolerances | None:
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


def _non_negative_float(value: Any, where: str, problems: Problems) -> float:
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


def pick_file(
    root: Path, named: Any, field_name: str, suffix: str, problems: Problems, exclude: set[str] = frozenset()
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


def _resolve_profile(root: Path, value: Any, problems: Problems) -> Path:
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


def check_against_profile(manifest: Manifest, deploy_cfg, problems: Problems) -> None:
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
