"""EDGE_REQUIRE_SIGNED_MODEL: the runtime serves a sealed model only when its detached signature
verifies with the key the device trusts, and otherwise exits with one line, having decrypted nothing.

The runtime runs as a process, as on a device: `python -m edge_deploy.runtime` (the image's entry,
which checks in its opening thread) and `edge-deploy runtime` (which checks in `load_model`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from edge_deploy.errors import ConfigError
from edge_deploy.signing.blob import sign_file, signature_path
from edge_deploy.signing.keys import SigningKey
from tests.fixtures.processes import free_port, wait_until
from tests.runtime.onnx_models import INPUT_NAME, INPUT_SHAPE
from tests.runtime.test_process import runtime_env

IMAGE_ENTRY = [sys.executable, "-m", "edge_deploy.runtime"]
CLI_ENTRY = [sys.executable, "-m", "edge_deploy.cli", "runtime"]  # MODEL_DIR is appended
SIGNATURE = "model.onnx.enc.sig"


@pytest.fixture(scope="module")
def release_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def model_dir(sealed_model, tmp_path) -> Path:
    """A copy of the sealed test model's directory (model.onnx.enc + model.json), unsigned."""
    return Path(shutil.copytree(sealed_model.model_dir, tmp_path / "model"))


@pytest.fixture
def signed_dir(model_dir, release_key) -> Path:
    sign_file(model_dir / "model.onnx.enc", release_key)
    return model_dir


def trusting(key: SigningKey, tmp_path: Path) -> dict[str, str]:
    """What a device that requires models signed by `key` sets (the key as a mounted file)."""
    pem = tmp_path / "trusted.pub"
    pem.write_bytes(key.public.pem())
    return {"EDGE_REQUIRE_SIGNED_MODEL": "true", "EDGE_SIGNING_PUBLIC_KEY_FILE": str(pem)}


def run_to_exit(argv: list[str], model_dir: Path, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """The runtime with its working and temp directories inside tmp_path, where a plaintext would show."""
    scratch = tmp_path / "scratch"
    (scratch / "tmp").mkdir(parents=True, exist_ok=True)
    environment = {**runtime_env(model_dir, env), "TMPDIR": str(scratch / "tmp"), "EDGE_PORT": str(free_port())}
    argv = [*argv, str(model_dir)] if argv == CLI_ENTRY else argv
    return subprocess.run(argv, cwd=scratch, env=environment, capture_output=True, text=True, timeout=60)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if "error:" in line]


def files_holding(root: Path, data: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and data in path.read_bytes()]


def test_a_signed_model_starts_and_answers_when_required(signed_dir, release_key, edge_key, sealed_model, tmp_path):
    port = free_port()
    env = {**runtime_env(signed_dir, {**edge_key.env, **trusting(release_key, tmp_path)})}
    env.update(EDGE_HOST="127.0.0.1", EDGE_PORT=str(port))
    with open(tmp_path / "runtime.log", "wb") as log:
        process = subprocess.Popen(IMAGE_ENTRY, env=env, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(f"{url}/readyz", timeout=1).ok, "edge runtime", 60, process)
        batch = np.zeros((1, *INPUT_SHAPE), dtype=np.float32)
        answer = requests.post(f"{url}/v1/infer", json={"inputs": {INPUT_NAME: batch.tolist()}}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"]["scores"]["shape"] == [1, 4]
        assert requests.get(f"{url}/v1/model", timeout=5).json()["model_sha256"] == sealed_model.model_sha256
    finally:
        process.terminate()
        process.wait(30)
    assert (
        f"the signature verifies with the trusted key {release_key.public.fingerprint()}"
        in (tmp_path / "runtime.log").read_text()
    )


@pytest.mark.parametrize(
    "argv, decrypt_to",
    [(IMAGE_ENTRY, "memory"), (IMAGE_ENTRY, "pipe"), (CLI_ENTRY, "memory")],
    ids=["image-entry", "image-entry-pipe", "edge-deploy-runtime"],
)
def test_an_unsigned_model_is_refused_when_required_and_nothing_is_decrypted(
    argv, decrypt_to, model_dir, release_key, edge_key, sealed_model, tmp_path
):
    before = sorted(p.name for p in model_dir.iterdir())
    env = {**edge_key.env, **trusting(release_key, tmp_path), "EDGE_DECRYPT_TO": decrypt_to}

    done = run_to_exit(argv, model_dir, env, tmp_path)

    assert done.returncode != 0
    (line,) = error_lines(done)
    assert "EDGE_REQUIRE_SIGNED_MODEL: refusing the model" in line and f"there is no {SIGNATURE}" in line
    assert sorted(p.name for p in model_dir.iterdir()) == before  # nothing written beside the model
    assert files_holding(tmp_path, sealed_model.weights) == []  # no plaintext in cwd, TMPDIR or the model dir


def test_the_signature_is_checked_before_the_keys_are_even_read(model_dir, release_key, tmp_path):
    """Without any key-encryption key the runtime would fail on the key id; it fails on the signature
    first, so decryption (which needs that key) cannot have started."""
    done = run_to_exit(IMAGE_ENTRY, model_dir, trusting(release_key, tmp_path), tmp_path)
    assert done.returncode == 2
    assert error_lines(done) == [
        f"edge-runtime: error: EDGE_REQUIRE_SIGNED_MODEL: refusing the model: {model_dir / 'model.onnx.enc'}: "
        f"not signed: there is no {SIGNATURE} beside it"
    ]


def test_a_model_signed_by_another_key_is_refused(signed_dir, edge_key, tmp_path):
    device_key = SigningKey.generate()  # what the device trusts; the model was signed by the release key
    done = run_to_exit(IMAGE_ENTRY, signed_dir, {**edge_key.env, **trusting(device_key, tmp_path)}, tmp_path)
    assert done.returncode == 2
    (line,) = error_lines(done)
    assert f"does not verify with the key whose fingerprint is {device_key.public.fingerprint()}" in line


def test_a_sealed_file_changed_after_signing_is_refused_before_decryption(signed_dir, release_key, edge_key, tmp_path):
    sealed = signed_dir / "model.onnx.enc"
    data = bytearray(sealed.read_bytes())
    data[-100] ^= 0x01  # one bit of the last chunk: decryption would fail on its tag, the signature fails first
    sealed.write_bytes(bytes(data))

    done = run_to_exit(IMAGE_ENTRY, signed_dir, {**edge_key.env, **trusting(release_key, tmp_path)}, tmp_path)

    assert done.returncode == 2
    (line,) = error_lines(done)
    assert "refusing the model" in line and "does not verify with the key whose fingerprint is" in line
    assert "cannot open the sealed model" not in line  # the decryption's own complaint: it never ran


def test_a_malformed_signature_is_refused_as_malformed(signed_dir, release_key, edge_key, tmp_path):
    signature_path(signed_dir / "model.onnx.enc").write_text("not base64 at all!")
    done = run_to_exit(IMAGE_ENTRY, signed_dir, {**edge_key.env, **trusting(release_key, tmp_path)}, tmp_path)
    assert done.returncode == 2
    (line,) = error_lines(done)
    assert f"{SIGNATURE} is malformed" in line


def test_a_plaintext_directory_is_refused_when_a_signature_is_required(sealed_model, release_key, tmp_path):
    plain = tmp_path / "converted"
    plain.mkdir()
    shutil.copyfile(sealed_model.plaintext_path, plain / "end2end.onnx")
    done = run_to_exit(CLI_ENTRY, plain, trusting(release_key, tmp_path), tmp_path)
    assert done.returncode != 0
    assert "holds no model.onnx.enc" in done.stderr and "only a sealed, signed model is served" in done.stderr


def test_required_without_a_trusted_key_is_a_config_error_naming_the_variable(signed_dir, edge_key, tmp_path):
    env = {**edge_key.env, "EDGE_REQUIRE_SIGNED_MODEL": "true"}
    done = run_to_exit(IMAGE_ENTRY, signed_dir, env, tmp_path)
    assert done.returncode == 2
    (line,) = error_lines(done)
    assert "EDGE_REQUIRE_SIGNED_MODEL is true but no key is trusted: set EDGE_SIGNING_PUBLIC_KEY" in line


def test_an_unsigned_model_still_starts_when_not_required_and_nothing_of_the_check_is_loaded(
    model_dir, release_key, edge_key, sealed_model
):
    """No signature, and a public key given but not required (a warning): the model loads, and neither
    the signing code nor cryptography's EC code is imported: the start-up path is unchanged."""
    script = (
        "import sys, json\n"
        "from edge_deploy.runtime.config import RuntimeConfig\nfrom edge_deploy.runtime.model import load_model\n"
        "from edge_deploy.runtime.plaintext import start_opening\n"
        "config = RuntimeConfig.from_env()\n"
        "model = load_model(config, start_opening(config))\n"
        "print(json.dumps({'sha256': model.model_sha256, 'modules': sorted(sys.modules)}))\n"
    )
    env = runtime_env(model_dir, {**edge_key.env, "EDGE_SIGNING_PUBLIC_KEY": release_key.public.pem().decode()})
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sha256"] == sealed_model.model_sha256
    loaded = set(result["modules"])
    assert not {m for m in loaded if m.startswith("edge_deploy.signing")}
    assert "cryptography.hazmat.primitives.asymmetric.ec" not in loaded
    assert "EDGE_REQUIRE_SIGNED_MODEL is not true: the model's signature is not checked" in done.stderr


def test_the_code_an_edge_image_ships_can_check_a_signature(signed_dir, release_key, edge_key, sealed_model, tmp_path):
    """The signing modules the check needs are among what `images.context` copies into an image."""
    from edge_deploy.images.context import copy_runtime_code

    copy_runtime_code(tmp_path / "app" / "edge_deploy")
    script = (
        "import sys\n"  # an editable install would find the checkout's modules: an image has none
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]\n"
        "from edge_deploy.runtime.config import RuntimeConfig\nfrom edge_deploy.runtime.model import load_model\n"
        "import edge_deploy.signing.blob as blob\n"
        "print(load_model(RuntimeConfig.from_env()).model_sha256, blob.__file__)\n"
    )
    env = {**runtime_env(signed_dir, {**edge_key.env, **trusting(release_key, tmp_path)})}
    env["PYTHONPATH"] = str(tmp_path / "app")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    sha256, blob_file = done.stdout.split()
    assert sha256 == sealed_model.model_sha256 and Path(blob_file).is_relative_to(tmp_path / "app")


def test_openssl_accepts_the_signature(signed_dir, release_key, tmp_path):
    """A check by implementations we did not write (coreutils' base64, OpenSSL), with the commands
    docs/device-guide.md gives an operator."""
    shutil.copyfile(signed_dir / "model.onnx.enc", tmp_path / "model.onnx.enc")
    shutil.copyfile(signed_dir / SIGNATURE, tmp_path / SIGNATURE)
    (tmp_path / "release-signing.pub").write_bytes(release_key.public.pem())

    def shell(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert shell(f"base64 -d {SIGNATURE} > {SIGNATURE}.der").returncode == 0
    verify = f"openssl dgst -sha256 -verify release-signing.pub -signature {SIGNATURE}.der model.onnx.enc"
    accepted = shell(verify)
    assert accepted.returncode == 0 and accepted.stdout.strip() == "Verified OK", accepted.stderr
    fingerprint = shell("openssl pkey -pubin -in release-signing.pub -outform DER | sha256sum").stdout.split()[0]
    assert fingerprint == release_key.public.fingerprint()

    (tmp_path / "release-signing.pub").write_bytes(SigningKey.generate().public.pem())
    assert shell(verify).returncode != 0


class TestTheTrustedKeySettings:
    """RuntimeConfig's checks of the three variables; each error names the variable to fix."""

    @staticmethod
    def config(tmp_path: Path, **env: str):
        from edge_deploy.runtime.config import RuntimeConfig

        return RuntimeConfig.from_env({"EDGE_MODEL_DIR": str(tmp_path), **env})

    def test_not_required_reads_no_key(self, tmp_path):
        assert self.config(tmp_path).trusted_key is None
        assert self.config(tmp_path, EDGE_REQUIRE_SIGNED_MODEL="false").trusted_key is None

    def test_the_key_as_text_or_as_a_file(self, tmp_path, release_key):
        pem = release_key.public.pem()
        (tmp_path / "pub.pem").write_bytes(pem)
        as_text = self.config(tmp_path, EDGE_REQUIRE_SIGNED_MODEL="yes", EDGE_SIGNING_PUBLIC_KEY=pem.decode())
        as_file = self.config(
            tmp_path, EDGE_REQUIRE_SIGNED_MODEL="1", EDGE_SIGNING_PUBLIC_KEY_FILE=str(tmp_path / "pub.pem")
        )
        assert (
            as_text.trusted_key.fingerprint() == as_file.trusted_key.fingerprint() == release_key.public.fingerprint()
        )

    def test_a_malformed_boolean(self, tmp_path):
        with pytest.raises(ConfigError, match=r"EDGE_REQUIRE_SIGNED_MODEL must be true or false, got 'sure'"):
            self.config(tmp_path, EDGE_REQUIRE_SIGNED_MODEL="sure")

    def test_an_unreadable_key_file(self, tmp_path):
        missing = tmp_path / "absent.pem"
        with pytest.raises(ConfigError, match=rf"EDGE_SIGNING_PUBLIC_KEY_FILE: cannot read {missing}"):
            self.config(tmp_path, EDGE_REQUIRE_SIGNED_MODEL="true", EDGE_SIGNING_PUBLIC_KEY_FILE=str(missing))

    def test_a_private_key_given_by_mistake_is_not_a_public_key_and_is_not_shown(self, tmp_path, release_key):
        private = release_key.private_pem().decode()
        with pytest.raises(ConfigError, match="EDGE_SIGNING_PUBLIC_KEY is not a PEM public key") as raised:
            self.config(tmp_path, EDGE_REQUIRE_SIGNED_MODEL="true", EDGE_SIGNING_PUBLIC_KEY=private)
        assert private.splitlines()[1] not in str(raised.value)

    def test_a_key_on_another_curve(self, tmp_path):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
        pem = p384.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        (tmp_path / "p384.pem").write_bytes(pem)
        with pytest.raises(ConfigError, match=r"EDGE_SIGNING_PUBLIC_KEY_FILE .*p384\.pem must be an ECDSA P-256"):
            self.config(
                tmp_path, EDGE_REQUIRE_SIGNED_MODEL="on", EDGE_SIGNING_PUBLIC_KEY_FILE=str(tmp_path / "p384.pem")
            )

    def test_both_variables(self, tmp_path, release_key):
        pem = release_key.public.pem().decode()
        with pytest.raises(ConfigError, match="set EDGE_SIGNING_PUBLIC_KEY or EDGE_SIGNING_PUBLIC_KEY_FILE, not both"):
            self.config(
                tmp_path,
                EDGE_REQUIRE_SIGNED_MODEL="true",
                EDGE_SIGNING_PUBLIC_KEY=pem,
                EDGE_SIGNING_PUBLIC_KEY_FILE="x",
            )
