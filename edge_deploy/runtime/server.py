"""The runtime's HTTP server (stdlib ThreadingHTTPServer) and its process entry point.

HTTP/1.0, one request per connection: a shutdown then only waits for requests in flight, never for
idle keep-alive clients.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge_deploy.errors import EdgeDeployError
from edge_deploy.runtime import tensors
from edge_deploy.runtime.model import BadInput, LoadedModel, RuntimeConfig, load_model

log = logging.getLogger("edge_deploy.runtime")

EXIT_STARTUP_FAILED = 2


class EdgeServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads: requests in flight finish
    block_on_close = True

    def __init__(self, config: RuntimeConfig, model: LoadedModel) -> None:
        self.config, self.model = config, model
        self.ready = threading.Event()
        super().__init__((config.host, config.port), _Handler)
        self.ready.set()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"

    def begin_shutdown(self) -> None:
        """Stop being ready and stop the serve loop (callable from a signal handler)."""
        self.ready.clear()
        threading.Thread(target=self.shutdown, name="edge-runtime-shutdown", daemon=True).start()


class _Handler(BaseHTTPRequestHandler):
    server: EdgeServer
    server_version = "edge-runtime"
    timeout = 60  # a client that stops sending cannot hold a handler thread (or the shutdown) forever

    def do_GET(self) -> None:
        routes = {
            "/healthz": lambda: self._json(HTTPStatus.OK, {"status": "ok"}),
            "/readyz": self._readyz,
            "/v1/model": lambda: self._json(HTTPStatus.OK, self.server.model.describe()),
        }
        self._route(routes, allowed_elsewhere={"/v1/infer": "POST"})

    def do_POST(self) -> None:
        self._route(
            {"/v1/infer": self._infer}, allowed_elsewhere=dict.fromkeys(("/healthz", "/readyz", "/v1/model"), "GET")
        )

    def _route(self, routes: dict[str, Any], allowed_elsewhere: dict[str, str]) -> None:
        path = self.path.split("?", 1)[0]
        if path in routes:
            routes[path]()
        elif path in allowed_elsewhere:
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} takes {allowed_elsewhere[path]}")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such path {path}; see /v1/model and /v1/infer")

    def _readyz(self) -> None:
        if self.server.ready.is_set():
            self._json(HTTPStatus.OK, {"status": "ready", "model_sha256": self.server.model.model_sha256})
        else:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "shutting down"})

    def _infer(self) -> None:
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type not in tensors.CONTENT_TYPES:
            return self._error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type {content_type or '(none)'} is not accepted; "
                f"use one of {', '.join(tensors.CONTENT_TYPES)}",
            )
        body = self._read_body()
        if body is None:
            return None
        reply_type = self._reply_type(content_type)
        try:
            inputs = tensors.decode_inputs(body, content_type, self.server.model)
            outputs = self.server.model.run(inputs)
        except BadInput as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        self._send(
            HTTPStatus.OK, tensors.encode_outputs(outputs, reply_type, self.server.model.model_sha256), reply_type
        )
        return None

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self._error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header")
            return None
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, f"Content-Length {length_header!r} is not a byte count")
            return None
        limit = self.server.config.max_body_bytes
        if length > limit:
            # the body is never read: the connection closes after this answer (HTTP/1.0)
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body is {length} bytes; the limit is {limit} (EDGE_MAX_BODY_BYTES)",
            )
            return None
        return self.rfile.read(length)

    def _reply_type(self, content_type: str) -> str:
        accept = self.headers.get("Accept", "")
        if tensors.NPZ in accept:
            return tensors.NPZ
        if tensors.JSON in accept:
            return tensors.JSON
        return tensors.JSON if content_type == tensors.JSON else tensors.NPZ

    def _json(self, status: HTTPStatus, document: dict[str, Any]) -> None:
        self._send(status, json.dumps(document).encode(), tensors.JSON)

    def _error(self, status: HTTPStatus, reason: str) -> None:
        log.info("%s %s -> %d: %s", self.command, self.path, status, reason)
        self._json(status, {"error": reason})

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def serve(config: RuntimeConfig, model: LoadedModel) -> None:
    """Serve until SIGTERM/SIGINT, then finish the requests in flight and return."""
    server = EdgeServer(config, model)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s: shutting down after the requests in flight", signal.Signals(signum).name)
        server.begin_shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("serving %s on %s:%d", model.metadata.get("name"), config.host, server.server_address[1])
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=_log_level(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = RuntimeConfig.from_env()
        model = load_model(config)
    except EdgeDeployError as exc:
        # one line, naming what to fix; never a traceback that could show a key variable
        print(f"edge-runtime: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_STARTUP_FAILED
    serve(config, model)
    return 0


def _log_level() -> int:
    return getattr(logging, os.environ.get("EDGE_LOG_LEVEL", "INFO").upper(), logging.INFO)
