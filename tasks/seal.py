"""Task `seal_model`: the validated ONNX model encrypted for the edge under the edge key, and signed
with the release signing key (EDGE_SIGNING_KEY) when one is configured."""

import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

from flytekit import Resources, task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from edge_deploy.crypto import ENCRYPTED_SUFFIX, Keyring, SealedFile, encrypt_file, seal_key_id_from_env
from edge_deploy.errors import EdgeDeployError
from edge_deploy.files import ONNX_FILE_NAME
from edge_deploy.images.context import SERVING_FILES, carry_signature, configured_signing_key, sign_sealed_model
from edge_deploy.signing.provenance import REPORT_NAME
from tasks.cluster import BUILDER_IMAGE, KEY_POD, SEAL_SECRETS
from tasks.stage import reported_stage


class SealOutputs(NamedTuple):
    sealed_model: FlyteFile
    seal: SealedFile
    serving: FlyteDirectory  # serving.json and the SDK metadata that ship beside the sealed model,
    # the sealed model's signature (context.carry_signature) when it was signed, and validation.json


@task(
    retries=1,
    timeout=1800,
    requests=Resources(cpu="1", mem="1Gi"),
    container_image=BUILDER_IMAGE,
    pod_template=KEY_POD,
    secret_requests=SEAL_SECRETS,
)
def seal_model(model_dir: FlyteDirectory, file_name: str = ONNX_FILE_NAME, key_id: str = "") -> SealOutputs:
    """Encrypt `model_dir/file_name` under KEK `key_id` (default: EDGE_SEAL_KEY_ID); the name gains `.enc`.
    The serving recipe and SDK metadata beside it come along unchanged (they hold no weights).

    With EDGE_SIGNING_KEY (or EDGE_SIGNING_KEY_URI) set, the sealed file is signed (cosign's sign-blob
    format) and the signature travels in `serving`, so that a device can require it before it
    decrypts; without, nothing changes.
    The result names the key id only; the keys themselves never leave this task.
    """
    with reported_stage("encrypt"):
        key_id = key_id or seal_key_id_from_env()
        source = Path(model_dir.download()) / file_name
        if not source.is_file():
            raise EdgeDeployError(f"nothing to seal: {file_name} is not in the validated model directory")
        target = Path(tempfile.mkdtemp(prefix="sealed-")) / (source.name + ENCRYPTED_SUFFIX)
        seal = encrypt_file(source, target, Keyring.from_env(), key_id, checksums=True)
        signature = sign_sealed_model(target, configured_signing_key())
        serving = Path(tempfile.mkdtemp(prefix="serving-"))
        # validation.json rides along (not into the image) for the provenance, which names its sha256
        for name in (*SERVING_FILES, REPORT_NAME):
            if (source.parent / name).is_file():
                shutil.copyfile(source.parent / name, serving / name)
        carry_signature(signature, serving)
        return SealOutputs(FlyteFile(str(target)), seal, FlyteDirectory(str(serving)))
