"""The hermetic build context: the target platform's runtime layer, the runtime code and the sealed model.

The runtime layer is what `pip install --target DIR --platform <tag> --python-version X.Y
--implementation cp --only-binary=:all:` puts in DIR on the build host: wheels for the *target*
platform, so the image build is COPY-only (no network, no emulation). Layers are cached under
`<work dir>/runtime-layers/`, keyed by platform, Python version and the pinned requirements; a cached
layer records the sha256 of every wheel it was installed from, and those hashes go into the tag.
"""

from __future__ import annotations

import compileall
import hashlib
import json
import logging
import os
import py_compile
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_deploy.config import Settings
from edge_deploy.crypto import Keyring, decrypt_file_to_bytes, encrypt_file, read_header
from edge_deploy.files import DirectoryExistsError, atomic_directory, sha256_file
from edge_deploy.images.errors import RuntimeLayerError
from edge_deploy.images.operators import OperatorLibrary
from edge_deploy.platforms import BuildTarget, RuntimePackages
from edge_deploy.signing.blob import SIGNATURE_SUFFIX, BlobSignature, BlobSignatureError, sign_file, verify_file
from edge_deploy.signing.keys import Signer
from edge_deploy.signing.release_signer import release_signer

log = logging.getLogger(__name__)

LAYER_FORMAT = 1  # bump when the way a layer is made changes, so old cache entries are not reused
DOCKERFILE = Path(__file__).resolve().parents[2] / "images" / "edge" / "Dockerfile"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the edge_deploy package
# What of edge_deploy goes into the image: the runtime, the crypto it decrypts with, and their stdlib-only deps;
# the signing modules check a model's signature where the device requires one (imported only then).
RUNTIME_CODE = (
    "__init__.py", "config.py", "errors.py", "files.py", "crypto", "runtime",
    "signing/__init__.py", "signing/keys.py", "signing/blob.py",
)  # fmt: skip
PIP_TIMEOUT_SECONDS = 1800
# What the runtime reads beside the sealed model (serving.json) and MMDeploy's SDK metadata for the device team
SERVING_FILES = ("serving.json", "pipeline.json", "deploy.json", "detail.json")
OPERATORS_DIR = "ops"
SEALED_FILE = "model.onnx.enc"  # the names in the image's model/ directory, which the runtime reads
SIGNATURE_FILE = SEALED_FILE + SIGNATURE_SUFFIX  # model.onnx.enc.sig: `blob.signature_path`'s name
# Beside the serving files (the directory that travels from the seal task to the build): which key signed
SIGNATURE_RECORD = "model-signature.json"


@dataclass(frozen=True)
class RuntimeLayer:
    path: Path  # a site-packages directory for the target platform
    wheels: Mapping[str, str]  # wheel file name -> sha256
    digest: str  # sha256 over the platform, Python version and wheel hashes

    @property
    def size(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


@dataclass(frozen=True)
class SealedModel:
    """The model as it goes into an image: sealed for the edge, identified by its plaintext sha256."""

    name: str
    sealed_path: Path
    model_sha256: str  # of the plaintext ONNX model
    key_id: str  # the KEK it is sealed under (a rewrap to a new key id makes a new image)
    serving_dir: Path | None = None  # the conversion's serving.json and SDK metadata (SERVING_FILES)
    custom_ops: tuple[str, ...] = ()  # "domain::Op" outside ONNX's domains, as the gate found them
    signature: BlobSignature | None = None  # of the sealed file, made with EDGE_SIGNING_KEY: see shipped_signature

    def serving_files(self) -> dict[str, Path]:
        """The files of SERVING_FILES that `serving_dir` holds, by name."""
        if self.serving_dir is None:
            return {}
        return {name: self.serving_dir / name for name in SERVING_FILES if (self.serving_dir / name).is_file()}

    def shipped_signature(self) -> BlobSignature | None:
        """The sealed file's signature: `signature`, else the one the seal task put into `serving_dir`
        (`carry_signature`: a Flyte task hands on one file, the sealed one, and a directory)."""
        if self.signature is not None or self.serving_dir is None:
            return self.signature
        return carried_signature(self.serving_dir)


@dataclass(frozen=True)
class BuildContext:
    path: Path
    dockerfile: str
    code_digest: str
    model_metadata: Mapping[str, object]


def prepare_runtime_layer(runtime: RuntimePackages, platform: str, cache_root: Path) -> RuntimeLayer:
    """The cached runtime layer for these requirements on `platform`, made on the first call."""
    key = _layer_key(runtime, platform)
    final = cache_root / "runtime-layers" / f"{platform.replace('/', '-')}-{key[:16]}"
    if (final / "wheels.json").is_file():
        return _load_layer(final, runtime, platform)
    started = time.monotonic()
    try:
        with atomic_directory(final) as work:
            _pip(runtime, platform, "download", "--dest", str(work / "wheels"))
            _pip(runtime, platform, "install", "--no-index", "--find-links", str(work / "wheels"), "--no-compile",
                 "--target", str(work / "site-packages"))  # fmt: skip
            _finish_site_packages(work / "site-packages", runtime)
            wheels = {p.name: sha256_file(p) for p in sorted((work / "wheels").glob("*.whl"))}
            (work / "wheels.json").write_text(json.dumps({"platform": platform, "wheels": wheels}, indent=1))
            shutil.rmtree(work / "wheels")
        log.info("runtime layer for %s made in %.1fs: %s", platform, time.monotonic() - started, ", ".join(wheels))
    except DirectoryExistsError:
        pass  # another build made the same layer meanwhile: use theirs
    return _load_layer(final, runtime, platform)


def write_build_context(
    directory: Path,
    target: BuildTarget,
    layer: RuntimeLayer,
    model: SealedModel,
    dockerfile: str,
    extra_metadata: Mapping[str, object] | None = None,
    operators: OperatorLibrary | None = None,
) -> BuildContext:
    """Lay out the context for one image in `directory` (which must not exist)."""
    directory.mkdir(parents=True)
    _link_tree(layer.path, directory / "site-packages")
    code_digest = copy_runtime_code(directory / "app" / "edge_deploy")
    byte_compile(directory / "app", target.spec.runtime.python_version)
    model_dir = directory / "model"
    model_dir.mkdir()
    shutil.copyfile(model.sealed_path, model_dir / SEALED_FILE)
    signature = model.shipped_signature()
    if signature is not None:
        shutil.copyfile(signature.path, model_dir / SIGNATURE_FILE)
    for name, path in model.serving_files().items():
        shutil.copyfile(path, model_dir / name)
    if operators is not None:
        (model_dir / OPERATORS_DIR).mkdir()
        for path in operators.files:
            shutil.copyfile(path, model_dir / OPERATORS_DIR / path.name)
    for path in model_dir.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)  # the non-root user reads them; the model is ciphertext
    metadata = model_metadata(target, model, extra_metadata, operators)
    (model_dir / "model.json").write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")
    (directory / "Dockerfile").write_text(dockerfile)
    log.debug("build context for %s in %s", target.name, directory)
    return BuildContext(directory, dockerfile, code_digest, metadata)


def model_metadata(
    target: BuildTarget,
    model: SealedModel,
    extra: Mapping[str, object] | None = None,
    operators: OperatorLibrary | None = None,
) -> dict[str, object]:
    """model.json: what the runtime reads (sha256 to verify, providers, operator libraries) and what
    /v1/model shows. Every shipped file's sha256 is in it, so the content tag changes with any of them;
    the sealed file and its signature are named by the plaintext sha256 and the signing key instead,
    since sealing and signing draw fresh randomness each time (see `tags`)."""
    metadata: dict[str, object] = {
        **dict(extra or {}),
        "name": model.name,
        "model_sha256": model.model_sha256,
        "key_id": model.key_id,
        "platform": str(target.platform),
        "device_class": target.name,
        "execution_providers": list(target.spec.execution_providers),
        "serving_files": {name: sha256_file(path) for name, path in model.serving_files().items()},
    }
    signature = model.shipped_signature()
    if signature is not None:
        # the key, not the signature's bytes: ECDSA draws a fresh nonce per signature, and the sealed
        # file's bytes are no tag input either (see `tags`), so a re-sealed model keeps its tag
        metadata["signature"] = {"file": SIGNATURE_FILE, "key_sha256": signature.key_fingerprint}
    if operators is not None:
        metadata["operator_libraries"] = [f"{OPERATORS_DIR}/{operators.file_name}"]
        metadata["operator_library_sha256"] = operators.sha256
        metadata["custom_ops"] = list(model.custom_ops)
    return metadata


def render_dockerfile(target: BuildTarget, template: Path = DOCKERFILE) -> str:
    """images/edge/Dockerfile, plus the platform's extra environment from the matrix."""
    text = template.read_text()
    if target.spec.env:
        pairs = " ".join(f"{name}={json.dumps(value)}" for name, value in sorted(target.spec.env.items()))
        text += f"\n# platform environment of {target.name} (images/platforms.yaml)\nENV {pairs}\n"
    return text


def copy_runtime_code(destination: Path) -> str:
    """Copy the runtime's part of edge_deploy (Python files only) and return its digest."""
    for source in runtime_code_files():
        target = destination / source.relative_to(PACKAGE_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return runtime_code_digest()


def runtime_code_digest() -> str:
    """sha256 over the runtime code's relative paths and contents (what `copy_runtime_code` copies)."""
    digest = hashlib.sha256()
    for source in runtime_code_files():
        digest.update(str(source.relative_to(PACKAGE_ROOT)).encode() + b"\0" + sha256_file(source).encode())
    return digest.hexdigest()


def runtime_code_files() -> list[Path]:
    files: list[Path] = []
    for name in RUNTIME_CODE:
        path = PACKAGE_ROOT / name
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def _pip(runtime: RuntimePackages, platform: str, command: str, *arguments: str) -> None:
    argv = [sys.executable, "-m", "pip", command, "--disable-pip-version-check", "--quiet", "--only-binary=:all:"]
    for tag in runtime.wheel_platforms:
        argv += ["--platform", tag]
    argv += ["--python-version", runtime.python_version, "--implementation", "cp"]
    if runtime.index_url and command == "download":
        argv += ["--extra-index-url", runtime.index_url]
    argv += [*arguments, *runtime.packages]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise RuntimeLayerError(f"pip {command} of {' '.join(runtime.packages)} for {platform} timed out") from None
    if done.returncode != 0:
        detail = [line for line in (done.stderr or done.stdout).splitlines() if "ERROR" in line or "error" in line]
        source = f" (extra index {runtime.index_url})" if runtime.index_url else ""
        raise RuntimeLayerError(
            f"cannot {command} the runtime wheels for {platform}, Python {runtime.python_version}: "
            f"{' '.join(runtime.packages)}{source}: {' '.join(detail[-2:]) or done.stderr.strip()[-300:]}"
        )


def _finish_site_packages(site_packages: Path, runtime: RuntimePackages) -> None:
    # console scripts carry the build host's interpreter path in their shebang: useless in the image
    shutil.rmtree(site_packages / "bin", ignore_errors=True)
    byte_compile(site_packages, runtime.python_version)


def byte_compile(tree: Path, python_version: str) -> None:
    """Byte-compile `tree` for the image's Python, where the build host runs the same version (a
    .pyc is version-specific). Without it every container start compiles every module again: the
    image's non-root user cannot write __pycache__. Unchecked-hash .pyc files do not depend on
    file times, which a COPY into an image does not keep."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python_version:
        compileall.compile_dir(
            str(tree), quiet=2, workers=0, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
        )


def _layer_key(runtime: RuntimePackages, platform: str) -> str:
    described = {
        "format": LAYER_FORMAT,
        "platform": platform,
        "python": runtime.python_version,
        "packages": list(runtime.packages),
        "wheel_platforms": list(runtime.wheel_platforms),
        "index_url": runtime.index_url,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def _load_layer(path: Path, runtime: RuntimePackages, platform: str) -> RuntimeLayer:
    recorded = json.loads((path / "wheels.json").read_text())
    wheels = dict(recorded["wheels"])
    digest = hashlib.sha256(
        json.dumps({"platform": platform, "python": runtime.python_version, "wheels": wheels}, sort_keys=True).encode()
    ).hexdigest()
    return RuntimeLayer(path / "site-packages", wheels, digest)


def _link_tree(source: Path, destination: Path) -> None:
    """Hard-link (or copy, across filesystems) a directory tree: the cached layer is ~150 MB."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, destination, copy_function=link_or_copy, symlinks=True)


def seal_model(
    onnx_path: Path, keyring: Keyring, key_id: str, out_dir: Path, name: str, signing_key: Signer | None = None
) -> SealedModel:
    """Seal a plaintext ONNX model for the edge under KEK `key_id` (into `out_dir`), signed with
    `signing_key`, else with EDGE_SIGNING_KEY(_FILE) when that is set (see `sign_sealed_model`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sealed_path = out_dir / f"{onnx_path.name}.enc"
    sealed = encrypt_file(onnx_path, sealed_path, keyring, key_id, checksums=True)
    signature = sign_sealed_model(sealed_path, signing_key or configured_signing_key())
    return SealedModel(name, sealed_path, sealed.plaintext_sha256, key_id, signature=signature)


def open_sealed_model(sealed_path: Path, keyring: Keyring, name: str, signing_key: Signer | None = None) -> SealedModel:
    """An already sealed model: decrypted in memory once, to learn (and prove) its plaintext sha256;
    signed like `seal_model` (the signature beside it is kept when that key made it)."""
    digest = hashlib.sha256(decrypt_file_to_bytes(sealed_path, keyring)).hexdigest()
    signature = sign_sealed_model(sealed_path, signing_key or configured_signing_key())
    return SealedModel(name, sealed_path, digest, read_header(sealed_path).key_id, signature=signature)


def configured_signing_key(settings: Settings | None = None) -> Signer | None:
    """The release's signer (EDGE_SIGNING_KEY(_FILE), or a key in Key Vault by EDGE_SIGNING_KEY_URI);
    None when neither is set."""
    return release_signer(settings or Settings.from_env())


def sign_sealed_model(sealed_path: Path, key: Signer | None) -> BlobSignature | None:
    """`<sealed_path>.sig` by `key` (a detached signature a device can require before it decrypts);
    None without a key: the model ships unsigned, as before signing existed. A signature already
    there by this key is kept, so that signing an already sealed model twice changes nothing."""
    if key is None:
        return None
    try:
        return verify_file(sealed_path, key.public)
    except BlobSignatureError:
        return sign_file(sealed_path, key)


def carry_signature(signature: BlobSignature | None, directory: Path) -> None:
    """Put the signature, and which key made it, into `directory` (the serving files' directory,
    which travels from the seal task to the build); nothing without one."""
    if signature is None:
        return
    shutil.copyfile(signature.path, directory / SIGNATURE_FILE)
    record = {"file": SIGNATURE_FILE, "key_sha256": signature.key_fingerprint, "public_key": signature.public_pem}
    (directory / SIGNATURE_RECORD).write_text(json.dumps(record, indent=1) + "\n")


def carried_signature(directory: Path) -> BlobSignature | None:
    """The signature `carry_signature` put into `directory`; None when the model was not signed."""
    if not (directory / SIGNATURE_RECORD).is_file():
        return None
    record = json.loads((directory / SIGNATURE_RECORD).read_text())
    return BlobSignature(directory / str(record["file"]), str(record["key_sha256"]), str(record.get("public_key", "")))
