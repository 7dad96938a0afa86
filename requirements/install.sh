#!/usr/bin/env bash
# The runtime environment: one recipe for `make install` and for the conversion task image.
#
#   requirements/install.sh VENV        (PYTHON=python3.11 by default; the venv is made when missing)
#
# 1. pip, then the pinned set (requirements/runtime.txt). It holds torch, which mmcv's ops compile
#    against, and mmcv's build tools: setuptools<80 (mmcv's setup.py imports pkg_resources, which
#    setuptools 80 removed) and ninja (a parallel compile). Being in the pinned set, nothing installed
#    later can swap them out from under the build.
# 2. mmcv, a source distribution only on PyPI: compiled here, against that torch, with those tools.
#    --no-binary: never a wheel built elsewhere. About 5 minutes on 2 cores; pip caches the result
#    unless PIP_NO_CACHE_DIR=1 (CI sets it, so that every CI run compiles it).
# 3. mmdeploy without its dependencies: its metadata pins protobuf<=3.20.2, which breaks flytekit;
#    its real dependencies are in runtime.txt.
#
# TORCH_INDEX_URL (optional): take torch and torchvision from that index first, e.g. PyTorch's CPU
# index https://download.pytorch.org/whl/cpu instead of PyPI's Linux build (CUDA, several GB).
set -euo pipefail

MMCV_VERSION=2.1.0
MMDEPLOY_VERSION=1.3.1

venv=${1:?usage: requirements/install.sh VENV}
requirements=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3.11}

command -v "$python" >/dev/null || { echo "error: $python not found: install Python 3.11 with its venv module" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

"${pip[@]}" install -q 'pip==25.3'
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  "${pip[@]}" install -q --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple \
    $(grep -E '^(torch|torchvision)==' "$requirements/runtime.txt")
fi
"${pip[@]}" install -q -r "$requirements/runtime.txt"

if "$venv/bin/python" -c 'import mmcv.ops' 2>/dev/null; then
  echo "mmcv $MMCV_VERSION with ops is already installed"
else
  echo "compiling mmcv $MMCV_VERSION with its ops (about 5 minutes on 2 cores)"
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=$(nproc) \
    "${pip[@]}" install --no-build-isolation --no-deps --no-binary mmcv "mmcv==$MMCV_VERSION"
  "$venv/bin/python" -c 'import mmcv.ops'
fi

"${pip[@]}" install -q --no-deps "mmdeploy==$MMDEPLOY_VERSION"
