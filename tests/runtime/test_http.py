"""The runtime's transport: HTTP/1.1 keep-alive, timeouts, and the bounds on connections and requests
in flight, on a server in this process with small limits."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from edge_deploy.runtime.dataplane import DataPlane
from edge_deploy.runtime.server import EdgeServer
from tests.runtime.conftest import runtime_config


@pytest.fixture
def small_server(sealed_model, edge_key, loaded_model) -> Iterator[EdgeServer]:
    config = runtime_config(
        sealed_model.model_dir,
        {
            **edge_key.env,
            "EDGE_HOST": "127.0.0.1",
            "EDGE_PORT": "0",
            "EDGE_MAX_INFLIGHT": "1",
            "EDGE_MAX_CONNECTIONS": "3",
            "EDGE_IDLE_TIMEOUT_S": "1",
            "EDGE_BODY_TIMEOUT_S": "1",
        },
    )
    server = EdgeServer(config, DataPlane.open(config, loaded_model))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def connect(server: EdgeServer) -> http.client.HTTPConnection:
    host, port = server.server_address[:2]
    return http.client.HTTPConnection(host, port, timeout=10)


def raw(server: EdgeServer) -> socket.socket:
    return socket.create_connection(server.server_address[:2], timeout=10)


def test_one_connection_serves_many_requests(small_server):
    connection = connect(small_server)
    connection.request("GET", "/healthz")
    first = connection.getresponse()
    assert first.version == 11 and first.getheader("Connection") is None
    first.read()
    opened = connection.sock
    for _ in range(20):
        connection.request("GET", "/v2/health/ready")
        response = connection.getresponse()
        assert response.status == 200
        response.read()
    assert connection.sock is opened  # never reconnected


def test_a_refusal_leaves_the_connection_usable(small_server):
    connection = connect(small_server)
    connection.request("POST", "/v1/infer", body=b"{not json", headers={"Content-Type": "application/json"})
    refused = connection.getresponse()
    assert refused.status == 400 and b"not valid JSON" in refused.read()
    connection.request("GET", "/v1/model")
    assert connection.getresponse().status == 200


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(small_server):
    sock = raw(small_server)
    started = time.monotonic()
    assert sock.recv(100) == b""  # the server closed it without a request
    assert 0.8 < time.monotonic() - started < 5


def test_a_body_that_stops_arriving_gets_408(small_server):
    sock = raw(small_server)
    sock.sendall(
        b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\nContent-Length: 100\r\n\r\n12"
    )
    started = time.monotonic()
    reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408 ") and b"stopped after 2 of its 100 bytes" in reply
    assert b"Connection: close" in reply and time.monotonic() - started < 5


def test_requests_beyond_the_in_flight_bound_get_503_with_retry_after(small_server):
    holder = raw(small_server)  # holds the only slot: its body never completes
    holder.sendall(
        b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\nContent-Length: 100\r\n\r\n"
    )
    time.sleep(0.2)
    connection = connect(small_server)
    connection.request("POST", "/v1/infer", body=b"{}", headers={"Content-Type": "application/json"})
    busy = connection.getresponse()
    assert busy.status == 503 and busy.getheader("Retry-After") == "1"
    assert b"too many requests in flight" in busy.read()
    health = connect(small_server)
    health.request("GET", "/healthz")  # reads are never queued behind inference
    assert health.getresponse().status == 200


def test_connections_beyond_the_bound_are_answered_503_and_closed(small_server):
    held = [raw(small_server) for _ in range(3)]
    time.sleep(0.2)
    extra = raw(small_server)
    reply = extra.recv(4096)
    assert reply.startswith(b"HTTP/1.1 503 ") and b"too many open connections" in reply
    for sock in held:
        sock.close()


def test_chunked_uploads_and_missing_lengths_get_411_even_when_every_slot_is_busy(small_server):
    holder = raw(small_server)  # holds the only in-flight slot: its body never completes
    holder.sendall(
        b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\nContent-Length: 100\r\n\r\n"
    )
    time.sleep(0.2)
    # a body refused for its framing takes no slot: the refusal is the answer, not a 503
    for headers in (b"Transfer-Encoding: chunked\r\n", b""):
        sock = raw(small_server)
        sock.sendall(b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + headers + b"\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 411 ")


def test_unknown_methods_are_405_in_json(small_server):
    connection = connect(small_server)
    connection.request("DELETE", "/v1/model")
    response = connection.getresponse()
    assert response.status == 405 and response.getheader("Content-Type") == "application/json"


def test_shutdown_closes_idle_keep_alive_connections_at_once(sealed_model, edge_key, loaded_model):
    config = runtime_config(
        sealed_model.model_dir,
        {**edge_key.env, "EDGE_HOST": "127.0.0.1", "EDGE_PORT": "0", "EDGE_IDLE_TIMEOUT_S": "60"},
    )
    server = EdgeServer(config, DataPlane.open(config, loaded_model))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    connection = connect(server)
    connection.request("GET", "/healthz")
    connection.getresponse().read()
    started = time.monotonic()
    server.begin_shutdown()
    thread.join(10)
    server.server_close()  # joins the handler threads: the idle one must not wait out its 60 s
    assert time.monotonic() - started < 5
