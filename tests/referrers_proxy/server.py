"""The proxy's handler (see the package docstring)."""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_PUT = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")
REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>sha256:[0-9a-f]{64})$")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class Referrers:
    """(repository, subject digest) -> the descriptors of the manifests that name it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_subject: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)

    def add(self, name: str, digest: str, media_type: str, body: bytes) -> str | None:
        document = json.loads(body)
        subject = (document.get("subject") or {}).get("digest")
        if not subject:
            return None
        descriptor = {"mediaType": media_type, "digest": digest, "size": len(body)}
        artifact_type = document.get("artifactType") or (document.get("config") or {}).get("mediaType")
        if artifact_type:
            descriptor["artifactType"] = artifact_type
        if document.get("annotations"):
            descriptor["annotations"] = document["annotations"]
        with self.lock:
            self.by_subject[(name, subject)][digest] = descriptor
        return subject

    def list(self, name: str, subject: str, artifact_type: str | None) -> list[dict]:
        with self.lock:
            found = list(self.by_subject.get((name, subject), {}).values())
        return [d for d in found if artifact_type is None or d.get("artifactType") == artifact_type]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    backend: str
    referrers: Referrers

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.command} {self.path} -> " + (format % args), flush=True)

    def do_GET(self) -> None:
        match = REFERRERS.match(urlsplit(self.path).path)
        if match:
            self._answer_referrers(match["name"], match["digest"])
        else:
            self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_PATCH(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def _answer_referrers(self, name: str, digest: str) -> None:
        artifact_type = (parse_qs(urlsplit(self.path).query).get("artifactType") or [None])[0]
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": self.referrers.list(name, digest, artifact_type),
        }
        headers = {"Content-Type": OCI_INDEX}
        if artifact_type:
            headers["OCI-Filters-Applied"] = "artifactType"
        self._reply(200, headers, json.dumps(index).encode())

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
        answer = requests.request(
            self.command, self.backend + self.path, headers=headers, data=body, allow_redirects=False, timeout=60
        )
        reply_headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        match = MANIFEST_PUT.match(urlsplit(self.path).path)
        if self.command == "PUT" and match and answer.status_code == 201 and body:
            digest = answer.headers.get("Docker-Content-Digest", "")
            media_type = self.headers.get("Content-Type", "")
            subject = self.referrers.add(match["name"], digest, media_type, body)
            if subject:
                reply_headers["OCI-Subject"] = subject
        self._reply(answer.status_code, reply_headers, b"" if self.command == "HEAD" else answer.content,
                    length=answer.headers.get("Content-Length"))  # fmt: skip

    def _reply(self, status: int, headers: dict[str, str], body: bytes, length: str | None = None) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


def make_server(port: int, backend: str, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    handler = type("ReferrersHandler", (Handler,), {"backend": backend.rstrip("/"), "referrers": Referrers()})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
