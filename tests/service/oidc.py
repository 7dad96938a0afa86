"""An OIDC issuer shaped as Microsoft Entra ID: its JWKS on a loopback server, and access tokens
with the claims Entra ID puts in them."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
AUDIENCE = "api://edge-deploy"
CLIENT_ID = "6e74172b-be56-4843-9ff4-e66a39bb12e3"


class JWKSServer:
    """Publishes the public half of `keys` at /discovery/v2.0/keys, as Entra ID does."""

    def __init__(self, keys: dict[str, rsa.RSAPrivateKey]) -> None:
        document = {"keys": []}
        for kid, key in keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            document["keys"].append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        body = json.dumps(document).encode()
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                self.send_response(200 if self.path == "/discovery/v2.0/keys" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                return None

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/discovery/v2.0/keys"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()


def entra_token(key, kid: str = "entra-key-1", algorithm: str = "RS256", **overrides) -> str:
    """An access token with the claims Entra ID puts in a v2.0 token for a service (client credentials)."""
    now = int(time.time())
    claims = {
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "azp": CLIENT_ID,
        "azpacr": "1",
        "oid": str(uuid.uuid4()),
        "sub": str(uuid.uuid4()),
        "tid": TENANT,
        "roles": ["Deployments.Read", "Deployments.Deploy"],
        "ver": "2.0",
    }
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})
