"""A sealed test model, its key, and the edge runtime serving it in-process on a free loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_deploy.crypto import Keyring, encode_key, generate_key, key_env_var
from edge_deploy.runtime.config import RuntimeConfig
from edge_deploy.runtime.dataplane import DataPlane
from edge_deploy.runtime.model import LoadedModel, load_model
from edge_deploy.runtime.server import EdgeServer
from tests.runtime.onnx_models import SealedTestModel, write_sealed_model

KEY_ID = "edge-test"
MAX_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class EdgeKey:
    key_id: str
    key: bytes = b""

    @property
    def env(self) -> dict[str, str]:
        return {key_env_var(self.key_id): encode_key(self.key)}


@pytest.fixture(scope="session")
def edge_key() -> EdgeKey:
    return EdgeKey(KEY_ID, generate_key())


@pytest.fixture(scope="session")
def sealed_model(tmp_path_factory: pytest.TempPathFactory, edge_key: EdgeKey) -> SealedTestModel:
    keyring = Keyring({edge_key.key_id: edge_key.key})
    return write_sealed_model(tmp_path_factory.mktemp("sealed-model"), keyring, edge_key.key_id)


def runtime_config(model_dir: Path, env: dict[str, str]) -> RuntimeConfig:
    """The runtime's configuration from exactly these variables (the test process's own are not read)."""
    return RuntimeConfig.from_env({"EDGE_MODEL_DIR": str(model_dir), **env})


@pytest.fixture(scope="session")
def loaded_model(sealed_model: SealedTestModel, edge_key: EdgeKey) -> LoadedModel:
    return load_model(runtime_config(sealed_model.model_dir, edge_key.env))


@pytest.fixture(scope="session")
def runtime_url(sealed_model: SealedTestModel, edge_key: EdgeKey, loaded_model: LoadedModel) -> Iterator[str]:
    """The runtime's HTTP server on a free port (port 0), in a thread of the test process."""
    config = runtime_config(
        sealed_model.model_dir,
        {**edge_key.env, "EDGE_HOST": "127.0.0.1", "EDGE_PORT": "0", "EDGE_MAX_BODY_BYTES": str(MAX_BODY_BYTES)},
    )
    server = EdgeServer(config, DataPlane.open(config, loaded_model))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
