"""Who may call the API: static tokens (hashed, scoped, re-read when their file changes) and OIDC JWTs
shaped as Microsoft Entra ID issues them, signed by a key whose JWKS a loopback server publishes."""

from __future__ import annotations

import subprocess
import time
import uuid

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from app.core.auth import new_token, token_digest
from tests.fixtures.processes import free_port
from tests.service.oidc import AUDIENCE, CLIENT_ID, ISSUER, JWKSServer, entra_token
from tests.service.processes import CLI, service_env, serving


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks(signing_key):
    server = JWKSServer({"entra-key-1": signing_key})
    yield server
    server.close()


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory):
    """A tokens file of this module's own, so that the reload test can change it."""
    path = tmp_path_factory.mktemp("auth") / "tokens.yaml"
    reader, deployer = new_token(), new_token()
    entries = [
        {"name": "dashboard", "sha256": token_digest(reader), "scopes": ["read"]},
        {"name": "release-pipeline", "sha256": token_digest(deployer), "scopes": ["read", "deploy"]},
    ]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path, reader, deployer


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("local-models")
    (root / "tiny").mkdir()
    (root / "tiny" / "model.pth").write_bytes(b"weights")
    return root


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_server, jwks, tokens_file, models_root):
    work = tmp_path_factory.mktemp("auth-service")
    env = service_env(
        work / "work",
        REDIS_URL=redis_server.url,
        EDGE_API_TOKENS_FILE=str(tokens_file[0]),
        EDGE_API_OIDC_ISSUER=ISSUER,
        EDGE_API_OIDC_AUDIENCE=f"{AUDIENCE},{CLIENT_ID}",
        EDGE_API_OIDC_JWKS_URL=jwks.url,
        EDGE_API_LOCAL_MODEL_ROOT=str(models_root),
    )
    with serving(env, work / "serve.log") as process:
        yield process


def call(service, token: str | None, method: str = "GET", path: str = "/api/v1/platforms", **options) -> httpx.Response:
    with service.client(token) as client:
        return client.request(method, path, **options)


def queue_local(service, token: str, target: str = "x86_64-cpu") -> httpx.Response:
    """Queue the tiny local model (no worker runs here); another target is another deployment."""
    body = {"local_dir": "tiny", "targets": [target], "options": {"build_images": False}}
    return call(service, token, "POST", "/api/v1/deployments", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})


def test_every_endpoint_but_health_needs_a_bearer_token(service):
    paths = (
        "/api/v1/platforms",
        "/api/v1/deployments",
        "/metrics",
        "/openapi.json",
        "/api/v1/runs/eabcdefghijklmnopqrs",
    )
    for path in paths:
        answer = call(service, None, path=path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"].startswith("Bearer")
    posted = call(service, None, "POST", "/api/v1/deployments", json={"local_dir": "tiny"})
    assert posted.status_code == 401
    unknown = call(service, "edt_" + "x" * 43)
    assert unknown.status_code == 401 and 'error="invalid_token"' in unknown.headers["www-authenticate"]
    assert call(service, None, path="/healthz").status_code == 200
    assert call(service, None, path="/readyz").status_code in (200, 503)


def test_static_tokens_carry_their_scopes(service, tokens_file):
    _, reader, deployer = tokens_file
    assert call(service, reader).status_code == 200
    refused = queue_local(service, reader)
    assert refused.status_code == 403 and "'deploy' scope" in refused.json()["message"]
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    accepted = queue_local(service, deployer)
    assert accepted.status_code == 202, accepted.text
    run = call(service, deployer, path=accepted.json()["links"]["run"]).json()
    assert run["principal"] == "release-pipeline"


def test_an_entra_id_token_is_accepted_with_its_roles_as_scopes(service, signing_key):
    token = entra_token(signing_key)
    accepted = queue_local(service, token, target="arm64-cpu")
    assert accepted.status_code == 202, accepted.text
    run = call(service, token, path=accepted.json()["links"]["run"]).json()
    assert run["principal"] == f"oidc:{CLIENT_ID}"
    assert run["request"]["local_dir"] == "tiny", "as the caller named it: never the server's own path"

    read_only = entra_token(signing_key, roles=["Deployments.Read"])
    assert call(service, read_only).status_code == 200
    assert queue_local(service, read_only).status_code == 403
    delegated = entra_token(signing_key, roles=None, scp="Deployments.Read Deployments.Deploy", aud=CLIENT_ID)
    assert call(service, delegated).status_code == 200, "a delegated token's scp claim, second audience"
    nothing = entra_token(signing_key, roles=["Other.Role"])
    assert call(service, nothing).status_code == 403
    # claims of the wrong type grant nothing, and never cost a 500
    for odd in ({"roles": [{"Deployments.Read": True}]}, {"roles": {"a": 1}}, {"roles": None, "scp": ["x"]}):
        assert call(service, entra_token(signing_key, **odd)).status_code == 403, odd
    mixed = entra_token(signing_key, roles=[{"x": 1}, "Deployments.Read"])
    assert call(service, mixed).status_code == 200


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"exp": int(time.time()) - 600}, "expired"),
        ({"aud": "api://someone-else"}, "Audience"),
        ({"iss": "https://sts.windows.net/another-tenant/"}, "issuer"),
        ({"exp": None}, "exp"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
    ],
)
def test_a_jwt_with_wrong_claims_is_refused(service, signing_key, change, says):
    answer = call(service, entra_token(signing_key, **change))
    assert answer.status_code == 401 and says in answer.json()["message"]


def test_a_jwt_not_signed_by_the_issuers_key_is_refused(service, signing_key, jwks):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = call(service, entra_token(stranger))  # right kid, wrong key
    assert forged.status_code == 401 and "Signature" in forged.json()["message"]
    unknown_kid = call(service, entra_token(stranger, kid="not-published"))
    assert unknown_kid.status_code == 401
    public_pem = signing_key.public_key().public_bytes(
        encoding=__import__("cryptography").hazmat.primitives.serialization.Encoding.PEM,
        format=__import__("cryptography").hazmat.primitives.serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    try:
        confused = jwt.encode(
            {"aud": AUDIENCE, "iss": ISSUER, "exp": int(time.time()) + 60},
            public_pem,
            "HS256",
            headers={"kid": "entra-key-1"},
        )
    except jwt.InvalidKeyError:  # PyJWT refuses to make the classic algorithm-confusion token itself
        confused = None
    if confused is not None:
        assert call(service, confused).status_code == 401
    unsigned = jwt.encode(
        {"aud": AUDIENCE, "iss": ISSUER, "exp": int(time.time()) + 60}, None, "none", headers={"kid": "entra-key-1"}
    )
    assert call(service, unsigned).status_code == 401


def test_a_new_token_in_the_file_is_taken_up_without_a_restart(service, tokens_file):
    path, _, _ = tokens_file
    fresh = new_token()
    document = yaml.safe_load(path.read_text())
    document["tokens"].append({"name": "late-comer", "sha256": token_digest(fresh), "scopes": ["read"]})
    assert call(service, fresh).status_code == 401
    path.write_text(yaml.safe_dump(document))
    deadline = time.monotonic() + 15
    while call(service, fresh).status_code != 200:
        assert time.monotonic() < deadline, "the changed tokens file was not re-read"
        time.sleep(0.5)


def test_tokens_never_reach_the_log(service, tokens_file, signing_key):
    _, reader, deployer = tokens_file
    call(service, reader)
    call(service, "edt_wrong-token-value-for-the-log-check")
    call(service, entra_token(signing_key, aud="api://someone-else"))
    log = service.log()
    assert "app.access" in log, "requests are logged"
    for secret in (reader, deployer, "wrong-token-value-for-the-log-check"):
        assert secret not in log
    assert "eyJ" not in log, "no JWT (base64 JSON) appears in the log"


def test_without_authentication_only_loopback_may_be_served(tmp_path, redis_server):
    env = service_env(tmp_path / "work", REDIS_URL=redis_server.url)
    port = free_port()
    refused = subprocess.run(
        [*CLI, "serve", "--host", "0.0.0.0", "--port", str(port)], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    assert "refusing to listen on 0.0.0.0" in refused.stderr and "EDGE_API_TOKENS_FILE" in refused.stderr


def test_with_a_token_file_any_address_may_be_served(tmp_path, redis_server, tokens_file):
    env = service_env(tmp_path / "work", REDIS_URL=redis_server.url, EDGE_API_TOKENS_FILE=str(tokens_file[0]))
    with serving(env, tmp_path / "serve.log", host="0.0.0.0") as process:
        assert call(process, tokens_file[1]).status_code == 200


def test_a_malformed_tokens_file_stops_the_service_naming_the_entry(tmp_path, redis_server):
    bad = tmp_path / "tokens.yaml"
    bad.write_text(yaml.safe_dump({"tokens": [{"name": "ci", "sha256": "not-a-digest", "scopes": ["read"]}]}))
    env = service_env(tmp_path / "work", REDIS_URL=redis_server.url, EDGE_API_TOKENS_FILE=str(bad))
    failed = subprocess.run(
        [*CLI, "serve", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60
    )
    assert failed.returncode != 0 and "tokens[0].sha256" in failed.stdout + failed.stderr


def test_when_the_issuers_keys_cannot_be_fetched_the_answer_is_503(tmp_path, redis_server, signing_key):
    env = service_env(
        tmp_path / "work",
        REDIS_URL=redis_server.url,
        EDGE_API_OIDC_ISSUER=ISSUER,
        EDGE_API_OIDC_AUDIENCE=AUDIENCE,
        EDGE_API_OIDC_JWKS_URL=f"http://127.0.0.1:{free_port()}/keys",  # nothing listens there
    )
    with serving(env, tmp_path / "serve.log") as process:
        answer = call(process, entra_token(signing_key))
    assert answer.status_code == 503 and answer.headers["retry-after"]
    assert "signing keys" in answer.json()["message"]
