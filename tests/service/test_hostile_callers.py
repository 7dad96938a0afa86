"""The service under callers who send junk on purpose, as a real `edge-deploy serve` process on
loopback: a key server that hangs, made-up HTTP methods, malformed claims. Nothing they send may
stall the others, grow the service's memory without bound, or get a 500."""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from app.core.auth import new_token, token_digest
from tests.service.oidc import AUDIENCE, ISSUER, entra_token
from tests.service.processes import service_env, serving


class HangingServer:
    """Accepts connections and never answers: a key server that hangs (the worst case for a client,
    which a refused connection is not)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/discovery/v2.0/keys"
        self.held: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.listener.accept()
                self.accepted += 1
                self.held.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def hanging_key_server():
    server = HangingServer()
    yield server
    server.close()


@pytest.fixture
def reader_token(tmp_path):
    token = new_token()
    path = tmp_path / "tokens.yaml"
    path.write_text(
        yaml.safe_dump({"tokens": [{"name": "dashboard", "sha256": token_digest(token), "scopes": ["read"]}]})
    )
    return path, token


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def test_a_hanging_key_server_stalls_no_one(tmp_path, redis_server, hanging_key_server, reader_token):
    tokens_file, token = reader_token
    env = service_env(
        tmp_path / "work",
        REDIS_URL=redis_server.url,
        EDGE_API_TOKENS_FILE=str(tokens_file),
        EDGE_API_OIDC_ISSUER=ISSUER,
        EDGE_API_OIDC_AUDIENCE=AUDIENCE,
        EDGE_API_OIDC_JWKS_URL=hanging_key_server.url,
    )
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with serving(env, tmp_path / "serve.log") as service:
        junk_answers: list[tuple[int, float]] = []

        def junk() -> None:  # a JWT with a key id no issuer has: no valid token needed to send one
            started = time.monotonic()
            with service.client(entra_token(stranger, kid=uuid.uuid4().hex)) as client:
                status = client.get("/api/v1/platforms").status_code
            junk_answers.append((status, time.monotonic() - started))

        health, static = [], []
        with ThreadPoolExecutor(max_workers=50) as flood, service.client() as plain, service.client(token) as reader:
            for _ in range(3):  # 150 junk requests in waves, while others ask their questions
                pending = [flood.submit(junk) for _ in range(50)]
                while not all(future.done() for future in pending):
                    started = time.monotonic()
                    assert plain.get("/healthz").status_code == 200
                    health.append(time.monotonic() - started)
                    started = time.monotonic()
                    assert reader.get("/api/v1/platforms").status_code == 200
                    static.append(time.monotonic() - started)
        assert hanging_key_server.accepted >= 1, "the service did ask the key server"

    assert len(junk_answers) == 150 and {status for status, _ in junk_answers} <= {401, 503}
    assert max(seconds for _, seconds in junk_answers) < 5.0, "a junk token waited on the key server"
    assert len(health) >= 20 and p99(health) < 0.1, f"/healthz p99 {p99(health) * 1000:.0f} ms"
    assert p99(static) < 0.5, f"static-token calls p99 {p99(static) * 1000:.0f} ms while the key server hangs"


def test_made_up_methods_add_no_metrics_series(tmp_path, redis_server):
    env = service_env(tmp_path / "work", REDIS_URL=redis_server.url)
    with serving(env, tmp_path / "serve.log") as service, service.client() as client:
        before = series(client.get("/metrics").text)
        for index in range(300):
            client.request(f"X{uuid.uuid4().hex[:8].upper()}", f"/api/v1/nowhere-{index}")
        after = series(client.get("/metrics").text)
    # the made-up methods share one `other` label and the made-up paths one `unmatched` route: one
    # series for all 300 requests (and one for the second /metrics call)
    grown = after - before
    assert grown <= {
        'edge_deploy_http_requests_total{method="other",route="unmatched",status="405"}',
        'edge_deploy_http_requests_total{method="other",route="unmatched",status="404"}',
        'edge_deploy_http_requests_total{method="GET",route="/metrics",status="200"}',
    }, sorted(grown)


def series(metrics_text: str) -> set[str]:
    """The request counter's series, one line each (the histogram's follow the same labels)."""
    return {
        line.rsplit(" ", 1)[0]
        for line in metrics_text.splitlines()
        if line.startswith("edge_deploy_http_requests_total{")
    }


def test_many_followers_with_bad_resume_ids_hold_a_bounded_number_of_redis_connections(
    tmp_path, redis_server, models_root
):
    """100 SSE followers of one queued run (no worker here), resuming from made-up event ids: ids
    that are no stream id get a 422 naming the header; ids beyond the stream's end resume from its
    end. Redis sees at most the event pool's connections, and every stream closes at the run's end."""
    import redis as redis_client

    from app.api.events import EVENT_CONNECTIONS
    from edge_deploy.status.redis_status import POOL_CONNECTIONS, RedisStatus
    from edge_deploy.status.tracker import RunTracker
    from tests.service.sse import read_events

    env = service_env(tmp_path / "work", REDIS_URL=redis_server.url, EDGE_API_LOCAL_MODEL_ROOT=str(models_root))
    probe = redis_client.Redis.from_url(redis_server.url)
    with serving(env, tmp_path / "serve.log") as service, service.client() as client:
        body = {"local_dir": "tiny", "targets": ["x86_64-cpu"], "options": {"build_images": False}}
        run = client.post("/api/v1/deployments", json=body).json()
        events_path = run["links"]["events"]
        for bad in ("99999999999999999999-0", "1-18446744073709551616", "now-0", "1-2-3"):
            refused = client.get(events_path, headers={"Last-Event-ID": bad})
            assert refused.status_code == 422 and refused.json()["field"] == "header Last-Event-ID", bad
        baseline = len(probe.client_list())
        resume_ids = ["18446744073709551615-0", "18446744073709551615-18446744073709551615", "0-0", "1-0"]

        def follow(index: int):
            with service.client() as follower:
                return read_events(follower, events_path, resume_ids[index % 4], timeout=60)

        with ThreadPoolExecutor(max_workers=100) as followers:
            streams = [followers.submit(follow, index) for index in range(100)]
            time.sleep(3)  # every stream open and reading
            assert not [future for future in streams if future.done()], "a stream ended before the run did"
            during = len(probe.client_list())
            RunTracker(RedisStatus.from_url(redis_server.url), run["run_id"]).failed("convert", "stopped by the test")
            endings = [future.result(timeout=60) for future in streams]
    # the event pool, and the request threads' shared pool: 100 streams once held 151 connections
    bound = EVENT_CONNECTIONS + POOL_CONNECTIONS
    assert during - baseline <= bound, f"{during - baseline} more Redis connections for 100 streams (bound {bound})"
    for events in endings:  # each stream saw the run's end and closed: from the end, or from the start
        assert events and events[-1].kind == "run-failed", events
    assert "stays unreachable" not in service.log()


@pytest.fixture
def models_root(tmp_path):
    root = tmp_path / "local-models"
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "model.pth").write_bytes(b"weights")
    return root


def test_a_caller_may_have_only_so_many_runs_queued_or_running(tmp_path, volatile_redis, models_root):
    env = service_env(
        tmp_path / "work",
        REDIS_URL=volatile_redis.url,  # its own: runs other tests left queued do not count here
        EDGE_API_LOCAL_MODEL_ROOT=str(models_root),
        EDGE_API_MAX_ACTIVE_RUNS="2",
    )
    with serving(env, tmp_path / "serve.log") as service, service.client() as client:

        def deploy(target: str, key: str | None = None):
            body = {"local_dir": "tiny", "targets": [target], "options": {"build_images": False}}
            return client.post("/api/v1/deployments", json=body, headers={"Idempotency-Key": key} if key else {})

        first, second = deploy("x86_64-cpu", "first"), deploy("arm64-cpu")
        assert (first.status_code, second.status_code) == (202, 202)
        third = deploy("x86_64-nvidia")
        assert third.status_code == 429 and third.headers["retry-after"], third.text
        assert "2 queued or running runs" in third.json()["message"]
        assert deploy("x86_64-cpu", "first").json()["replayed"], "a retry of a queued run is no new run"
        assert client.post(first.json()["links"]["cancel"]).status_code == 202
        assert deploy("x86_64-nvidia").status_code == 202, "an ended run frees its place"
