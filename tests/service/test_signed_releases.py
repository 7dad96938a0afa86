"""With signing configured (here only the public key, as an API needs), the device's question
`releases/latest` is answered only with a signed image, and the answer names its signature and
provenance; without it, the newest accepted image is answered as before."""

from __future__ import annotations

import uuid

import pytest

from edge_deploy.records.mongo import MongoRecordStore
from edge_deploy.signing.keys import SigningKey
from tests.service.processes import service_env, serving
from tests.service.records import released

LATEST = "/api/v1/models/{model}/releases/latest"


@pytest.fixture(scope="module")
def signed_api(tmp_path_factory, redis_server, mongo_server, api_tokens):
    work = tmp_path_factory.mktemp("signed-api")
    database = f"edge_signed_{uuid.uuid4().hex[:8]}"
    env = service_env(
        work / "work",
        REDIS_URL=redis_server.url,
        MONGODB_URI=mongo_server.url,
        MONGODB_DATABASE=database,
        EDGE_API_TOKENS_FILE=str(api_tokens.file),
        EDGE_SIGNING_PUBLIC_KEY=SigningKey.generate().public.pem().decode(),
    )
    store = MongoRecordStore(mongo_server.url, database)
    try:
        store.upsert(released("signed-old", repo="camera", minute=1, signed=True))
        store.upsert(released("unsigned-newer", repo="camera", minute=5))
        store.upsert(released("unsigned-only", repo="doorbell", minute=3))
    finally:
        store.close()
    with serving(env, work / "serve.log", api_tokens.deployer) as service:
        yield service


def test_only_a_signed_image_is_answered_with_its_signature(signed_api):
    with signed_api.client() as client:
        answer = client.get(LATEST.format(model="camera"), params={"device_class": "arm64-cpu"})
        assert answer.status_code == 200, answer.text
        release = answer.json()
        assert release["run_id"] == "signed-old", "the newer image is not signed"
        assert release["signature"].startswith("sha256:") and release["provenance"].startswith("sha256:")
        assert release["signature"] != release["provenance"]
        none = client.get(LATEST.format(model="doorbell"), params={"device_class": "arm64-cpu"})
        assert none.status_code == 404 and "signed" in none.json()["message"]
