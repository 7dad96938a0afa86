"""Task `decrypt_model`: the plaintext model directory, when the source files are encrypted."""

import tempfile
from pathlib import Path
from typing import NamedTuple

from flytekit import Resources, task
from flytekit.types.directory import FlyteDirectory

from edge_deploy.crypto import DirectoryFile, Keyring, decrypt_directory, is_encrypted
from tasks.cluster import BUILDER_IMAGE, KEY_POD, STATUS_SECRETS
from tasks.stage import reported_stage


class DecryptOutputs(NamedTuple):
    model_dir: FlyteDirectory
    files: list[DirectoryFile]


@task(
    retries=1,
    timeout=1800,
    requests=Resources(cpu="1", mem="1Gi"),
    container_image=BUILDER_IMAGE,
    pod_template=KEY_POD,
    secret_requests=STATUS_SECRETS,
)
def decrypt_model(model_dir: FlyteDirectory) -> DecryptOutputs:
    """Decrypt the sealed files (dropping `.enc`) into a new directory; plain files pass through.

    A directory with no sealed file is returned as it is, so plaintext sources cost nothing.
    Keys come from EDGE_KEY_<ID> variables or EDGE_KEY_DIR (a mounted secret).
    """
    with reported_stage("decrypt"):
        source = Path(model_dir.download())
        if not any(is_encrypted(path) for path in source.rglob("*") if path.is_file()):
            return DecryptOutputs(model_dir, [])
        target = Path(tempfile.mkdtemp(prefix="plain-")) / "model"
        files = decrypt_directory(source, target, Keyring.from_env())
        return DecryptOutputs(FlyteDirectory(str(target)), files)
