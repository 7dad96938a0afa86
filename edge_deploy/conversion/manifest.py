"""A model directory's manifest, read and checked field by field and against its deploy profile.

The manifest's own fields are checked by a pydantic schema (types, ranges, unknown fields), the
rest against the directory (the files it names) and the deploy profile (the IO that profile
exports). Every problem is collected before raising, so a ModelDirError names every bad field at
once; `inference` uses the same checks on the manifest it makes up. `Problems` stays a small list
of our own because most of those checks are not about the file's fields (files on disk, the
profile's IO), and it gives the schema's errors and theirs one message.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from edge_deploy.codec import field_path
from edge_deploy.conversion import profiles
from edge_deploy.conversion.contract import (
    CODEBASE_TASKS,
    DEFAULT_TARGETS,
    DEPLOY_CONFIG_NAME,
    MANIFEST_NAMES,
    MANIFEST_VERSION,
    MASKS_OUTPUT,
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


# ---- the manifest's own fields ---------------------------------------------------------------


def _refuse(message: str) -> PydanticCustomError:
    return PydanticCustomError("manifest", message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _InputFields(_Fields):
    name: Any = "input"
    shape: Any = None
    dynamic_axes: Any = None
    dtype: Any = "float32"

    @field_validator("name")
    @classmethod
    def _name(cls, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise _refuse(f"{value!r} is not a non-empty string")
        return value

    @field_validator("shape")
    @classmethod
    def _shape(cls, value: Any) -> list[int]:
        if not (isinstance(value, list) and len(value) == 4 and all(_is_int(d) and d > 0 for d in value)):
            raise _refuse(f"{value!r} is not an NCHW shape of 4 positive integers, e.g. [1, 3, 224, 224]")
        return value

    @field_validator("dynamic_axes")
    @classmethod
    def _dynamic_axes(cls, value: Any) -> dict[int, str]:
        if not value:
            return {}
        if not isinstance(value, dict):
            raise _refuse(f"{value!r} is not a mapping of axis index to name, e.g. {{0: batch}}")
        axes: dict[int, str] = {}
        for key, name in value.items():
            axis = int(key) if isinstance(key, str) and key.isdigit() else key
            if not _is_int(axis) or not 0 <= axis <= 3:
                raise _refuse(f"axis {key!r} is not an NCHW axis index 0..3")
            if not isinstance(name, str) or not name:
                raise _refuse(f"axis {axis}: {name!r} is not an axis name such as batch, height or width")
            axes[axis] = name
        return dict(sorted(axes.items()))

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, value: Any) -> str:
        if value != "float32":
            raise _refuse(f"{value!r} is not supported; mmdeploy exports float32 image inputs")
        return value


def _non_negative(value: Any) -> float:
    # PyYAML reads `1e-4` (no dot) as a string, so numeric strings are accepted.
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _refuse(f"{value!r} is not a number") from None
    if not number >= 0:  # also NaN
        raise _refuse(f"{value!r} must be a non-negative number")
    return number


class _ToleranceFields(_Fields):
    atol: Any
    rtol: Any
    min_task_agreement: Any = None

    @field_validator("atol", "rtol")
    @classmethod
    def _tolerance(cls, value: Any) -> float:
        return _non_negative(value)

    @field_validator("min_task_agreement")
    @classmethod
    def _agreement(cls, value: Any) -> float | None:
        if value is None:
            return None
        share = _non_negative(value)
        if share > 1:
            raise _refuse(f"{share} is a fraction and must be at most 1")
        return share


class _ManifestFields(_Fields):
    """The fields of manifest.yaml as written; see docs/model-directory.md."""

    version: Any = MANIFEST_VERSION
    task: Any = None
    codebase: Any = None
    inputs: list[_InputFields] | None = None
    outputs: Any = None
    deploy_profile: Any = None
    opset: Any = None
    targets: Any = None
    tolerances: _ToleranceFields | None = None
    config: Any = None
    checkpoint: Any = None
    classes: Any = None

    @field_validator("version")
    @classmethod
    def _version(cls, value: Any) -> int:
        if value != MANIFEST_VERSION:
            raise _refuse(f"{value!r} is not supported; this edge-deploy reads version {MANIFEST_VERSION}")
        return value

    @field_validator("codebase")
    @classmethod
    def _codebase(cls, value: Any) -> str:
        if value not in CODEBASE_TASKS:
            raise _refuse(f"{value!r} is not one of {', '.join(CODEBASE_TASKS)}")
        return value

    @field_validator("task")
    @classmethod
    def _task(cls, value: Any) -> Task:
        try:
            return Task(value)
        except ValueError:
            raise _refuse(f"{value!r} is not one of {', '.join(t.value for t in Task)}") from None

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> list:
        if not isinstance(value, list) or not value:
            raise _refuse("a list with one input, e.g. [{name: input, shape: [1, 3, 224, 224]}]")
        if len(value) != 1:
            raise _refuse(f"{len(value)} inputs given; mmdeploy exports these codebases with exactly one image input")
        if not all(isinstance(item, dict) for item in value):
            raise _refuse("each input is a mapping with name, shape and (optional) dynamic_axes")
        return value

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, value: Any) -> list[str] | None:
        return _names(value, "output names, e.g. [dets, labels]")

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: Any) -> list[str] | None:
        return _names(value, "class names in label order, e.g. [person, bicycle, car]")

    @field_validator("opset")
    @classmethod
    def _opset(cls, value: Any) -> int | None:
        if value is None:
            return None
        if not _is_int(value):
            raise _refuse(f"{value!r} is not an integer ONNX opset ({MIN_OPSET}..{MAX_OPSET})")
        return _supported_opset(value)

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: Any) -> list[str]:
        if value is None:
            return list(DEFAULT_TARGETS)
        if not isinstance(value, list) or not value or not all(isinstance(t, str) and t for t in value):
            raise _refuse(f"{value!r} is not a list of device classes or OCI platforms, e.g. [linux/arm64]")
        return value

    @field_validator("tolerances", mode="before")
    @classmethod
    def _tolerances(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, dict):
            raise _refuse(f"{value!r} is not a mapping with atol, rtol (and optional min_task_agreement)")
        return value


def _names(value: Any, what: str) -> list[str] | None:
    """None, or a non-empty list of non-empty strings."""
    if value is not None and not (isinstance(value, list) and value and all(isinstance(n, str) and n for n in value)):
        raise _refuse(f"{value!r} is not a list of {what}")
    return value


def _supported_opset(opset: int) -> int:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise _refuse(f"ONNX opset {opset} is not supported: mmdeploy 1.3.1 exports opsets {MIN_OPSET}..{MAX_OPSET}")
    return opset


KNOWN_FIELDS = sorted(_ManifestFields.model_fields)


def _schema_problems(error: ValidationError, problems: Problems) -> None:
    for item in error.errors():
        where = field_path(item["loc"])
        if item["type"] == "extra_forbidden":
            known = KNOWN_FIELDS if len(item["loc"]) == 1 else _known_below(item["loc"])
            problems.add(where, f"unknown field; known: {', '.join(known)}")
        elif item["type"] == "missing":
            problems.add(where, "is required")
        else:
            problems.add(where, item["msg"])


def _known_below(loc: tuple) -> list[str]:
    model = _ToleranceFields if loc[0] == "tolerances" else _InputFields
    return sorted(model.model_fields)


def _read_manifest_file(manifest_path: Path) -> dict[str, Any]:
    try:
        text = manifest_path.read_text()
        data = json.loads(text) if manifest_path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ModelDirError(f"{manifest_path.name}: cannot be parsed: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelDirError(f"{manifest_path.name}: expected a mapping of fields, got {type(data).__name__}")
    return data


# ---- the manifest against the directory and its deploy profile --------------------------------


def load_with_manifest(root: Path, manifest_path: Path) -> ModelDir:
    data = _read_manifest_file(manifest_path)
    problems = Problems(f"{root.name}/{manifest_path.name}")
    fields = None
    try:
        fields = _ManifestFields.model_validate({str(key): value for key, value in data.items()})
    except ValidationError as exc:
        _schema_problems(exc, problems)
    for required in ("task", "codebase", "inputs", "deploy_profile"):
        if required not in data:
            problems.add(required, "is required")
    config_path = pick_file(root, data.get("config"), "config", ".py", problems, exclude=_deploy_file_names(data))
    checkpoint_path = pick_file(root, data.get("checkpoint"), "checkpoint", ".pth", problems)
    deploy_config_path = resolve_profile(root, data.get("deploy_profile"), problems)
    problems.raise_if_any()
    assert fields is not None  # no problems: the schema accepted the fields

    deploy_cfg = profiles.load_profile(deploy_config_path)
    onnx_cfg = deploy_cfg.onnx_config
    inferred: list[str] = []
    outputs = fields.outputs
    if outputs is None:
        outputs = list(onnx_cfg.output_names)
        inferred.append(f"outputs={outputs} (from the deploy profile)")
    opset = fields.opset
    if opset is None:
        opset = profile_opset(deploy_cfg, fields.deploy_profile, problems)
        inferred.append(f"opset={opset} (from the deploy profile)")
    if fields.task not in CODEBASE_TASKS[fields.codebase]:
        problems.add("task", f"{fields.task.value!r} is not a task of codebase {fields.codebase!r}")
    manifest = Manifest(
        task=fields.task,
        codebase=fields.codebase,
        inputs=[InputSpec(i.name, list(i.shape), i.dynamic_axes, i.dtype) for i in fields.inputs],
        outputs=outputs,
        deploy_profile=fields.deploy_profile,
        opset=opset,
        targets=fields.targets,
        tolerances=Tolerances(**fields.tolerances.model_dump()) if fields.tolerances else None,
        config=config_path.name,
        checkpoint=checkpoint_path.name,
        classes=fields.classes,
    )
    check_against_profile(manifest, deploy_cfg, problems)
    problems.raise_if_any()
    if inferred:
        log.info("%s: manifest left out fields; inferred: %s", root.name, "; ".join(inferred))
    return ModelDir(
        root,
        manifest,
        config_path,
        checkpoint_path,
        inferred,
        deploy_config_path,
        manifest_path,
        opset_pinned=fields.opset is not None,
    )


def profile_opset(deploy_cfg, profile_name: str, problems: Problems) -> int:
    """The deploy profile's `onnx_config.opset_version`, checked like a manifest's opset."""
    opset = deploy_cfg.onnx_config.get("opset_version", MIN_OPSET)
    try:
        return _supported_opset(int(opset))
    except PydanticCustomError as exc:
        problems.add(f"{profile_name}: onnx_config.opset_version", exc.message())
        return MIN_OPSET


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


def resolve_profile(root: Path, value: Any, problems: Problems) -> Path:
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
    exports_masks = MASKS_OUTPUT in (onnx_cfg.get("output_names") or [])
    if exports_masks != (manifest.task is Task.INSTANCE_SEGMENTATION) and manifest.codebase == "mmdet":
        problems.add(
            "task",
            f"{manifest.task.value!r} but {where} exports {'' if exports_masks else 'no '}instance masks; "
            "pick the instance-seg profile for a model with a mask head, the detection one otherwise",
        )
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
