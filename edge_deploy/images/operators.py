"""Custom-operator libraries an image must carry: what the validation gate loaded, for the target's platform.

MMDeploy exports some models with operators of its own (`mmdeploy::MMCVModulatedDeformConv2d` for
DCNv2 detectors, for example), which ONNX Runtime runs only once MMDeploy's operator library is
registered. The gate registers the build host's copy; an image needs the copy for *its* platform,
taken from the same MMDeploy release's wheel for that platform (pip download, as the runtime layer
is made), cached under `<work dir>/operator-libraries/`. Where MMDeploy publishes no wheel for a
platform (PyPI has x86_64 only), that target is refused with the operators and the reason: an image
that cannot start is never built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edge_deploy.files import atomic_directory, sha256_file
from edge_deploy.images.errors import OperatorLibraryError
from edge_deploy.platforms import RuntimePackages

log = logging.getLogger(__name__)

MMDEPLOY_REQUIREMENT = "mmdeploy==1.3.1"  # the release requirements/install.sh converts with
# the library, then what it needs beside it: it links the ONNX Runtime its wheel carries (RPATH
# $ORIGIN), though the operators run on the API of the ONNX Runtime that registers them
MMDEPLOY_FILES = ("mmdeploy/lib/libmmdeploy_onnxruntime_ops.so", "mmdeploy/lib/libonnxruntime.so.1.15.1")
# operator domain -> (the wheel that carries its library, the files to take from it, library first)
LIBRARIES = {"mmdeploy": (MMDEPLOY_REQUIREMENT, MMDEPLOY_FILES)}
PIP_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class OperatorLibrary:
    files: tuple[Path, ...]  # the library the runtime registers, then the libraries it loads
    sha256: str  # over every file, in order
    domain: str

    @property
    def file_name(self) -> str:
        return self.files[0].name


def operator_library(
    custom_ops: tuple[str, ...] | list[str], runtime: RuntimePackages, platform: str, cache_root: Path
) -> OperatorLibrary | None:
    """The library that runs `custom_ops` ("domain::Op") on `platform`; None when there are none."""
    if not custom_ops:
        return None
    domains = sorted({op.split("::", 1)[0] for op in custom_ops})
    unknown = [domain for domain in domains if domain not in LIBRARIES]
    if unknown or len(domains) > 1:
        raise OperatorLibraryError(
            f"{platform}: the model uses {', '.join(custom_ops)}; only one operator library is shipped, for the "
            f"domain(s) {', '.join(LIBRARIES)}, so no image can run it"
        )
    domain = domains[0]
    requirement, members = LIBRARIES[domain]
    key = hashlib.sha256(json.dumps([requirement, members, platform, list(runtime.wheel_platforms)]).encode())
    final = cache_root / "operator-libraries" / f"{platform.replace('/', '-')}-{key.hexdigest()[:16]}"
    files = tuple(final / Path(member).name for member in members)
    if not all(path.is_file() for path in files):
        _fetch(requirement, members, runtime, platform, custom_ops, final)
    digest = hashlib.sha256("".join(sha256_file(path) for path in files).encode()).hexdigest()
    return OperatorLibrary(files, digest, domain)


def _fetch(
    requirement: str, members: tuple[str, ...], runtime: RuntimePackages, platform: str, ops, final: Path
) -> None:
    with tempfile.TemporaryDirectory(prefix="operator-wheel-") as scratch:
        argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet", "--no-deps",
                "--only-binary=:all:", "--python-version", runtime.python_version, "--implementation", "cp",
                "--dest", scratch]  # fmt: skip
        for tag in runtime.wheel_platforms:
            argv += ["--platform", tag]
        try:
            done = subprocess.run([*argv, requirement], capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise OperatorLibraryError(
                f"{platform}: downloading {requirement} for its operator library timed out"
            ) from None
        wheels = sorted(Path(scratch).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise OperatorLibraryError(
                f"{platform}: the model uses {', '.join(ops)}, which ONNX Runtime runs only with "
                f"{Path(members[0]).name}; "
                f"{requirement} publishes no wheel (and so no library) for {platform} "
                f"({', '.join(runtime.wheel_platforms)}), so an image for it could not start: leave this target out"
            )
        with atomic_directory(final, replace=True) as work, zipfile.ZipFile(wheels[0]) as wheel:
            for member in members:
                try:
                    with wheel.open(member) as source, open(work / Path(member).name, "wb") as target:
                        shutil.copyfileobj(source, target)
                except KeyError:
                    raise OperatorLibraryError(f"{platform}: {wheels[0].name} has no {member}") from None
    log.info("operator library for %s taken from %s", platform, wheels[0].name)
