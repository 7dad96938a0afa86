"""The builder task image holds no torch: every task wired to it must import without the heavy stack."""

import re
import subprocess
import sys
from pathlib import Path

from tests.flyte_specs.conftest import BUILDER_IMAGE, ROOT

# What the conversion image has and the builder image has not (images/builder/requirements.in).
HEAVY_MODULES = [
    "torch",
    "torchvision",
    "mmcv",
    "mmengine",
    "mmdet",
    "mmseg",
    "mmpretrain",
    "mmdeploy",
    "onnx",
    "onnxruntime",
    "cv2",
    "matplotlib",
]  # fmt: skip  (numpy and Pillow are there: the acceptance stage compares answers with them)
BLOCKER = """
import importlib.abc, sys
HEAVY = set(sys.argv[1].split(","))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the builder image)")
sys.meta_path.insert(0, Blocker())
import importlib
for module, task in (item.split(":") for item in sys.argv[2:]):
    assert getattr(importlib.import_module(module), task).name == module + "." + task
print("imported", len(sys.argv) - 2)
"""


def builder_tasks(specs) -> list[str]:
    """module:task for every task whose pod runs the builder image, from the task's own command line."""
    found = []
    for name in specs.tasks:
        primary = specs.primary(name)
        if primary["image"] == BUILDER_IMAGE:
            args = primary["args"]
            found.append(f"{args[args.index('task-module') + 1]}:{args[args.index('task-name') + 1]}")
    return found


def test_builder_image_tasks_import_without_torch_mmdeploy_or_onnx(specs):
    tasks = builder_tasks(specs)
    assert len(tasks) == 9
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(HEAVY_MODULES), *tasks],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"imported {len(tasks)}"


def test_the_blocker_refuses_the_heavy_stack():
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(HEAVY_MODULES), "torch.nn:Module"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "No module named 'torch' (not in the builder image)" in done.stderr


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[=<>!~\[ ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_builder_requirements_are_pinned_by_the_tested_set_and_exclude_the_heavy_stack():
    builder = requirement_names(ROOT / "images/builder/requirements.in")
    pinned = requirement_names(ROOT / "requirements/runtime.txt")
    assert builder <= pinned, f"not pinned in requirements/runtime.txt: {sorted(builder - pinned)}"
    heavy = {"torch", "torchvision", "mmcv", "mmengine", "mmdet", "mmsegmentation", "mmpretrain", "mmdeploy"}
    assert not builder & (heavy | {"onnx", "onnxruntime", "opencv-python"})


def test_the_conversion_image_and_make_install_run_the_same_install_recipe():
    # One recipe (mmcv's build tools pinned, mmcv compiled against the pinned torch, mmdeploy without
    # its protobuf pin) for both, so what CI proves on a bare machine is what the image gets.
    dockerfile = (ROOT / "images/conversion/Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^RUN .*requirements/install\.sh /opt/venv$", dockerfile, re.MULTILINE)
    assert re.search(r"^\t.*requirements/install\.sh \$\(VENV\)$", makefile, re.MULTILINE)
    recipe = (ROOT / "requirements/install.sh").read_text()
    assert "--no-binary mmcv" in recipe and "MMCV_WITH_OPS=1" in recipe and '--no-deps "mmdeploy==' in recipe
