"""The runtime's HTTP transport (stdlib, HTTP/1.1 with keep-alive); `__main__` is the process entry point.

A thin layer: it parses requests, enforces the limits on what a request may cost, and hands the
bytes to the routes in `routes`, which use the codecs and the data plane. Every answer, refusals
included, is one `sendall` of the status line, headers and body (no small writes for Nagle's
algorithm to delay), and after every refusal the connection still answers its next request unless
the body was left unread, in which case the connection is closed (`Connection: close`).

Limits (`Limits`, from EDGE_* variables): open connections (more are answered 503 and closed),
requests in flight (more get 503 with Retry-After), the idle time of a keep-alive connection, the
time a body may stall (408), and the body's size (413). A body must come with Content-Length
(411 otherwise, also for chunked uploads).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge_deploy.runtime.codecs import json_values
from edge_deploy.runtime.config import RuntimeConfig
from edge_deploy.runtime.dataplane import DataPlane
from edge_deploy.runtime.routes import Reply, Request, route

log = logging.getLogger("edge_deploy.runtime")

RETRY_AFTER_SECONDS = "1"


class EdgeServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads: requests in flight finish
    block_on_close = True
    request_queue_size = 128

    def __init__(self, config: RuntimeConfig, plane: DataPlane) -> None:
        self.config, self.plane, self.limits = config, plane, config.limits
        self.inflight = threading.BoundedSemaphore(self.limits.max_inflight)
        self._connections: set[_Handler] = set()
        self._connections_lock = threading.Lock()
        self.closing = threading.Event()
        super().__init__((config.host, config.port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        if len(self._connections) >= self.limits.max_connections:
            # no thread for it: one canned answer, then close
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(_raw_reply(HTTPStatus.SERVICE_UNAVAILABLE, _too_many("open connections"), close=True))
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def opened(self, handler: _Handler) -> None:
        with self._connections_lock:
            self._connections.add(handler)

    def closed(self, handler: _Handler) -> None:
        with self._connections_lock:
            self._connections.discard(handler)

    def begin_shutdown(self) -> None:
        """Stop being ready, stop accepting, and close idle keep-alive connections (callable from a
        signal handler); requests in flight finish, then their connections close."""
        self.closing.set()
        self.plane.stop()
        with self._connections_lock:
            for handler in list(self._connections):
                handler.close_if_idle()
        threading.Thread(target=self.shutdown, name="edge-runtime-shutdown", daemon=True).start()


class _Handler(BaseHTTPRequestHandler):
    server: EdgeServer
    protocol_version = "HTTP/1.1"
    server_version = "edge-runtime"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._idle = True
        self._state_lock = threading.Lock()
        self.server.opened(self)

    def finish(self) -> None:
        self.server.closed(self)
        super().finish()

    def close_if_idle(self) -> None:
        with self._state_lock:
            if self._idle:
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

    def handle_one_request(self) -> None:
        # the wait for a request line is the idle time of a keep-alive connection
        self.connection.settimeout(self.server.limits.idle_timeout_s)
        super().handle_one_request()

    def parse_request(self) -> bool:
        with self._state_lock:
            self._idle = False
        return super().parse_request()

    def do_GET(self) -> None:
        self._serve(read_body=False)

    def do_POST(self) -> None:
        self._serve(read_body=True)

    def _serve(self, read_body: bool) -> None:
        try:
            if not read_body:
                self._answer(route(self.server.plane, self._request(b"")))
                return
            # a body refused for its framing costs nothing, so it takes no slot: its 411 or 413 is
            # sent at once, also when every slot is busy
            length = self._body_length()
            if length is None:
                return
            if not self.server.inflight.acquire(blocking=False):
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, _too_many("requests in flight"), close=True)
                return
            try:
                body = self._read_body(length)
                if body is not None:
                    self._answer(route(self.server.plane, self._request(body)))
            finally:
                self.server.inflight.release()
        finally:
            with self._state_lock:
                self._idle = True
            if self.server.closing.is_set():
                self.close_connection = True

    def _request(self, body: bytes) -> Request:
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        return Request(self.command, parts.path, query, self.headers, body)

    def _answer(self, reply: Reply) -> None:
        self._reply(reply.status, reply.body, reply.content_type, reply.headers)

    def _body_length(self) -> int | None:
        """The body's length from its headers; None after refusing a body it cannot or may not take."""
        limits = self.server.limits
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not accepted: send a Content-Length")
            return None
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header")
            return None
        if not length_header.strip().isdigit():
            self._refuse(HTTPStatus.BAD_REQUEST, f"Content-Length {length_header!r} is not a byte count")
            return None
        length = int(length_header)
        if length > limits.max_body_bytes:
            self._refuse(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body is {length} bytes; the limit is {limits.max_body_bytes} (EDGE_MAX_BODY_BYTES)",
            )
            return None
        return length

    def _read_body(self, length: int) -> bytearray | None:
        limits = self.server.limits
        self.connection.settimeout(limits.body_timeout_s)
        body = bytearray(length)  # one buffer, filled in place: no copies of a large body
        view, received = memoryview(body), 0
        try:
            while received < length:
                got = self.rfile.readinto1(view[received:])
                if not got:
                    break
                received += got
        except TimeoutError:
            pass
        if received < length:
            self._refuse(
                HTTPStatus.REQUEST_TIMEOUT,
                f"the body stopped after {received} of its {length} bytes "
                f"(nothing for {limits.body_timeout_s:g} s: EDGE_BODY_TIMEOUT_S)",
            )
            return None
        return body

    def _refuse(self, status: HTTPStatus, reason: str) -> None:
        """A refusal before the body was read: the connection closes after it."""
        log.info("%s %s -> %d: %s", self.command, self.path, status, reason)
        self._reply(status, json_values.dumps({"error": reason}), close=True)

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: str = json_values.JSON,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        close = close or self.close_connection
        self.close_connection = close
        with contextlib.suppress(OSError):  # a client that left does not need its answer
            self.connection.sendall(_raw_reply(status, body, content_type, headers, close))
        self.log_request(status, len(body))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (bad request line, 414, 431, an unknown method) as JSON
        self.close_connection = True
        reason = message or HTTPStatus(code).phrase
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, reason = HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} is not served; use GET or POST"
        self._reply(code, json_values.dumps({"error": reason}), close=True)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _raw_reply(
    status: int,
    body: bytes,
    content_type: str = json_values.JSON,
    headers: dict[str, str] | None = None,
    close: bool = False,
) -> bytes:
    lines = [
        f"HTTP/1.1 {int(status)} {HTTPStatus(status).phrase}",
        f"Server: {_Handler.server_version}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        lines.append(f"Retry-After: {RETRY_AFTER_SECONDS}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _too_many(what: str) -> bytes:
    return json_values.dumps({"error": f"too many {what}; retry in {RETRY_AFTER_SECONDS} s"})


def serve(config: RuntimeConfig, plane: DataPlane, announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then finish the requests in flight and return."""
    server = EdgeServer(config, plane)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s: shutting down after the requests in flight", signal.Signals(signum).name)
        server.begin_shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("serving %s on %s:%d", plane.name, config.host, server.server_address[1])
    if announce is not None:
        announce(server.url)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        log.info("stopped")
