"""`edge-deploy --version` and the crypto commands start without lakeFS, Flyte, torch or Docker.

Each command runs in a new process in which those packages cannot be imported at all (a meta-path
finder refuses them), so a command that reaches for one fails here instead of quietly costing
seconds of start-up on every call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_deploy import crypto

REPO = Path(__file__).resolve().parents[2]
UNWANTED = (
    "lakefs_sdk",
    "lakefs",
    "flytekit",
    "flyteidl",
    "torch",
    "mmcv",
    "mmdeploy",
    "mmengine",
    "docker",
    "boto3",
    "botocore",
    "onnx",
    "onnxruntime",
    "pymongo",
    "redis",
)

BLOCKED_RUN = """
import atexit, json, os, runpy, sys
UNWANTED = set(json.loads(os.environ["UNWANTED_MODULES"]))

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in UNWANTED:
            raise ImportError(f"{name} must not be imported by this command")
        return None

sys.meta_path.insert(0, Refuse())
atexit.register(lambda: open(os.environ["LOADED_MODULES"], "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["edge-deploy", *sys.argv[1:]]
runpy.run_module("edge_deploy.cli", run_name="__main__")
"""


@pytest.fixture
def run_blocked(tmp_path: Path):
    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    crypto.write_key_file(key_dir / "edge-2026", crypto.generate_key())
    crypto.write_key_file(key_dir / "edge-2027", crypto.generate_key())

    def run(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
        loaded = tmp_path / "loaded.json"
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "EDGE_KEY_DIR": str(key_dir),
            "EDGE_SEAL_KEY_ID": "edge-2026",
            "UNWANTED_MODULES": json.dumps(UNWANTED),
            "LOADED_MODULES": str(loaded),
        }
        argv = [sys.executable, "-c", BLOCKED_RUN, *args]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done, {name.partition(".")[0] for name in json.loads(loaded.read_text())}

    return run


def test_version_loads_click_and_nothing_of_the_pipeline(run_blocked) -> None:
    done, loaded = run_blocked("--version")
    assert done.stdout.startswith("edge-deploy, version ")
    assert "cryptography" not in loaded  # not even the crypto commands' module
    assert "edge_deploy" in loaded and not loaded & set(UNWANTED)


def test_the_crypto_commands_run_without_lakefs_flyte_torch_or_docker(run_blocked, tmp_path: Path) -> None:
    model = tmp_path / "end2end.onnx"
    model.write_bytes(os.urandom(300_000))
    original = model.read_bytes()

    run_blocked("keygen", "-o", str(tmp_path / "keys" / "edge-2028"))
    run_blocked("encrypt", str(model), "--chunk-size", "64KiB")
    inspected, _ = run_blocked("inspect", str(tmp_path / "end2end.onnx.enc"), "--json")
    run_blocked("rewrap", str(tmp_path / "end2end.onnx.enc"), "--to", "edge-2027")
    model.unlink()
    _, loaded = run_blocked("decrypt", str(tmp_path / "end2end.onnx.enc"))

    assert json.loads(inspected.stdout)["chunks"] == 5
    assert model.read_bytes() == original
    assert "cryptography" in loaded and not loaded & set(UNWANTED)
