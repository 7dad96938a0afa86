"""Read endpoints of the deployment service under load: requests/s and p50/p99 latency, against GET /healthz.

    .venv/bin/python benchmarks/service_read_api.py [--concurrency 8] [--seconds 5] [--records 500] [--mongo]

Starts redis-server and `edge-deploy serve` (uvicorn, one process) on free loopback ports, with the
records in the embedded SQLite file (or, with --mongo, in SecantusDB, the test-only MongoDB-wire
server), fills the store with realistic records and one run's live status, then for each endpoint
keeps `--concurrency` keep-alive connections busy for `--seconds` and prints requests/s, p50 and p99,
and the ratio to /healthz: the server's own ceiling (routing, middleware, auth are in both; what
the ratio shows is the cost of the endpoint's own work and its store). Every request carries a
bearer token, as a client's would. The load generator is a minimal HTTP/1.1 client in this process,
on the same cores as the server: read the figures as relative, and the machine as shared.

Then the device's question, `releases/latest`, three times: with no worker (the API's readiness does
not depend on one), with an `edge-deploy worker` running, and while the OIDC key server hangs (it
accepts connections and never answers) and 32 callers send JWTs with made-up key ids: the answer
must not change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from base64 import urlsafe_b64encode
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.auth import new_token, token_digest  # noqa: E402
from edge_deploy.records import DeploymentRecord  # noqa: E402
from edge_deploy.records.embedded import EmbeddedRecordStore  # noqa: E402
from edge_deploy.records.mongo import MongoRecordStore  # noqa: E402
from edge_deploy.status import RunTracker  # noqa: E402
from edge_deploy.status.redis_status import RedisStatus  # noqa: E402
from tests.service.records import released  # noqa: E402

MODELS = 10
CLASSES = (("x86_64-cpu", "arm64-cpu"), ("x86_64-nvidia",), ("arm64-cpu",))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, what: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with code {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port} within {timeout:.0f}s")


class HangingKeyServer:
    """Accepts connections and never answers: an OIDC key server that hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/keys"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._hold, daemon=True).start()

    def _hold(self) -> None:
        try:
            while True:
                self.held.append(self.listener.accept()[0])
        except OSError:
            return


def junk_jwt() -> str:
    """A JWT-shaped token naming a key id no issuer has: anyone can send one, no key needed."""

    def part(data: bytes) -> str:
        return urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "RS256", "typ": "JWT", "kid": uuid.uuid4().hex}).encode())
    claims = part(json.dumps({"sub": "junk"}).encode())
    return f"{header}.{claims}.{part(os.urandom(256))}"


def flood(port: int, stop: threading.Event, callers: int = 32) -> None:
    """`callers` connections sending junk JWTs until `stop` (any answer will do: 401 or 503)."""

    async def caller() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while not stop.is_set():
            request = f"GET /api/v1/platforms HTTP/1.1\r\nHost: junk\r\nAuthorization: Bearer {junk_jwt()}\r\n\r\n"
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(content_length(head))
        writer.close()

    async def all_callers() -> None:
        await asyncio.gather(*(caller() for _ in range(callers)))

    asyncio.run(all_callers())


def records(count: int) -> list[DeploymentRecord]:
    return [
        released(f"bench-{index:05d}", repo=f"model-{index % MODELS}", classes=CLASSES[index % 3], minute=index)
        for index in range(count)
    ]


def content_length(head: bytes) -> int:
    lines = head.split(b"\r\n")
    return next(int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:"))


class Connection:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads whole responses."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def get(self, path: str) -> int:
        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {self.token}\r\n\r\n"
        self.writer.write(request.encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        await self.reader.readexactly(content_length(head))
        return int(head.split(b" ", 2)[1])

    def close(self) -> None:
        self.writer.close()


async def load(port: int, token: str, path: str, concurrency: int, seconds: float) -> list[float]:
    connections = [Connection(port, token) for _ in range(concurrency)]
    await asyncio.gather(*(connection.open() for connection in connections))
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(connection: Connection) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = await connection.get(path)
            if status != 200:
                raise SystemExit(f"GET {path} answered {status}")
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client(connection) for connection in connections))
    for connection in connections:
        connection.close()
    return latencies


def measure(port: int, token: str, path: str, concurrency: int, seconds: float) -> tuple[float, float, float]:
    asyncio.run(load(port, token, path, concurrency, min(1.0, seconds)))  # warm-up
    latencies = asyncio.run(load(port, token, path, concurrency, seconds))
    quantiles = statistics.quantiles(latencies, n=100)
    return len(latencies) / seconds, quantiles[49] * 1000, quantiles[98] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--mongo", action="store_true", help="records in SecantusDB instead of SQLite")
    options = parser.parse_args()
    redis_binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench-service-") as temp:
        work = Path(temp)
        try:
            redis_port = free_port()
            processes.append(
                subprocess.Popen(
                    [
                        redis_binary,
                        "--port",
                        str(redis_port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                )
            )
            wait_for_port(redis_port, "redis-server", processes[-1])
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "LAKEFS_", "MONGODB_", "REDIS_"))}
            env.update(EDGE_WORK_DIR=str(work), REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
            if options.mongo:
                mongo_port = free_port()
                config = work / "secantusd.toml"
                config.write_text("")
                argv = [sys.executable, "-m", "secantus", "--config", str(config), "--host", "127.0.0.1"]
                argv += ["--port", str(mongo_port), "--storage-path", str(work / "mongo"), "--log-level", "WARNING"]
                processes.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                wait_for_port(mongo_port, "SecantusDB", processes[-1])
                env.update(MONGODB_URI=f"mongodb://127.0.0.1:{mongo_port}", MONGODB_DATABASE="bench")
                store = MongoRecordStore(env["MONGODB_URI"], "bench")
            else:
                store = EmbeddedRecordStore(work / "deployments.sqlite3")
            filled = records(options.records)
            for record in filled:
                store.upsert(record)
            store.close()
            run_id = "bench-run"
            status = RedisStatus.from_url(redis_url)
            tracker = RunTracker(status, run_id)
            for stage in ("download", "decrypt", "convert", "validate"):
                tracker.start_stage(stage)
                tracker.finish_stage(stage, 1.0)
            token = new_token()
            tokens = work / "tokens.yaml"
            tokens.write_text(
                yaml.safe_dump({"tokens": [{"name": "bench", "sha256": token_digest(token), "scopes": ["read"]}]})
            )
            env["EDGE_API_TOKENS_FILE"] = str(tokens)
            key_server = HangingKeyServer()
            env.update(
                EDGE_API_OIDC_ISSUER="https://login.example.com/tenant/v2.0",
                EDGE_API_OIDC_AUDIENCE="api://edge-deploy",
                EDGE_API_OIDC_JWKS_URL=key_server.url,
            )
            port = free_port()
            log = open(work / "serve.log", "wb")  # noqa: SIM115 (open for the server's whole life)
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "edge_deploy.cli", "serve", "--port", str(port)],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            wait_for_port(port, "edge-deploy serve", processes[-1])
            endpoints = [
                ("GET /healthz (ceiling)", "/healthz"),
                ("GET /api/v1/platforms", "/api/v1/platforms"),
                ("GET /api/v1/deployments?limit=20", "/api/v1/deployments?limit=20"),
                (
                    "GET /api/v1/deployments?model&device_class",
                    "/api/v1/deployments?model=model-3&device_class=arm64-cpu&limit=20",
                ),
                ("GET /api/v1/deployments/{run_id}", f"/api/v1/deployments/{filled[len(filled) // 2].run_id}"),
                (
                    "GET .../releases/latest?device_class",
                    "/api/v1/models/model-4/releases/latest?device_class=arm64-cpu",
                ),
                ("GET /api/v1/runs/{run_id}", f"/api/v1/runs/{run_id}"),
            ]
            store_name = "SecantusDB (MongoDB wire)" if options.mongo else "SQLite (embedded)"
            print(
                f"records: {options.records} in {store_name}; live status in Redis; {options.concurrency} connections, "
                f"{options.seconds:g} s per endpoint; {os.cpu_count()} cores shared by server and client"
            )
            print(f"{'endpoint':<46} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs healthz':>10}")
            ceiling = None
            for name, path in endpoints:
                rate, p50, p99 = measure(port, token, path, options.concurrency, options.seconds)
                ceiling = ceiling or rate
                print(f"{name:<46} {rate:>8.0f} {p50:>8.2f} {p99:>8.2f} {rate / ceiling:>9.2f}x")
            latest = "/api/v1/models/model-4/releases/latest?device_class=arm64-cpu"
            print("\nthe device's question (releases/latest), under conditions:")
            print(f"{'condition':<46} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs first':>10}")
            first = None

            def row(condition: str) -> None:
                nonlocal first
                rate, p50, p99 = measure(port, token, latest, options.concurrency, options.seconds)
                first = first or rate
                print(f"{condition:<46} {rate:>8.0f} {p50:>8.2f} {p99:>8.2f} {rate / first:>9.2f}x")

            row("no worker running")
            worker_log = open(work / "worker.log", "wb")  # noqa: SIM115 (open for the worker's whole life)
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "edge_deploy.cli", "worker"],
                    cwd=ROOT,
                    env=env,
                    stdout=worker_log,
                    stderr=subprocess.STDOUT,
                )
            )
            time.sleep(3)  # it reports in
            row("one worker running")
            stop = threading.Event()
            junk = threading.Thread(target=flood, args=(port, stop), daemon=True)
            junk.start()
            time.sleep(1)
            try:
                row("key server hanging, 32 junk-JWT callers")
            finally:
                stop.set()
                junk.join(timeout=30)
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(timeout=30)


if __name__ == "__main__":
    main()
