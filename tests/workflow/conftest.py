"""Environment for running the whole workflow in-process: keys, a work dir, a run id per test."""

import base64
import os
import uuid

import pytest

EDGE_KEY = os.urandom(32)


@pytest.fixture
def workflow_env(monkeypatch, tmp_path):
    """The embedded default: no MongoDB, Redis or registry; a fresh work dir and run id per test."""
    for name in ("MONGODB_URI", "REDIS_URL", "EDGE_REGISTRY", "LAKEFS_ENDPOINT", "EDGE_KEY_DIR"):
        monkeypatch.delenv(name, raising=False)
    run_id = f"test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("EDGE_RUN_ID", run_id)
    monkeypatch.setenv("EDGE_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("EDGE_KEY_EDGE_TEST", base64.b64encode(EDGE_KEY).decode())
    monkeypatch.setenv("EDGE_SEAL_KEY_ID", "edge-test")
    monkeypatch.setenv("FLYTE_LOCAL_CACHE_ENABLED", "false")
    return run_id
