"""`edge-deploy serve` and `edge-deploy worker` as real processes on loopback, with their environment.

They are started as `python -m edge_deploy.cli ...` from the project root, which is what the
`edge-deploy` script runs, so that `app` imports whether or not the project is installed with it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from edge_deploy.crypto import key_env_var
from edge_deploy.jobs.redis_queue import worker_key
from tests.fixtures.processes import free_port, running, stop, wait_until
from tests.fixtures.s3 import PROJECT_ROOT

FOREIGN_VARIABLES = ("EDGE_", "LAKEFS_", "MONGODB_", "REDIS_URL", "FLYTE_")
SEAL_KEY_ID = "service-test"
SEAL_KEY = os.urandom(32)  # made per session: no key lives in the code
CLI = [sys.executable, "-m", "edge_deploy.cli"]


def service_env(work_dir: Path, **variables: str) -> dict[str, str]:
    """A clean environment (nothing of the developer's shell points elsewhere) plus `variables`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(FOREIGN_VARIABLES)}
    work_dir.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "EDGE_WORK_DIR": str(work_dir),
            key_env_var(SEAL_KEY_ID): base64.b64encode(SEAL_KEY).decode(),
            "EDGE_SEAL_KEY_ID": SEAL_KEY_ID,
            "FLYTE_LOCAL_CACHE_ENABLED": "false",
            "PYTHONPATH": str(PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(variables)
    return env


@dataclass
class ServiceProcess:
    url: str
    port: int
    log_path: Path
    process: subprocess.Popen
    token: str | None = field(default=None, repr=False)

    def client(self, token: str | None = None, **options) -> httpx.Client:
        token = token or self.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, trust_env=False, **options)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _healthy(url: str) -> bool:
    return httpx.get(url + "/healthz", timeout=1.0, trust_env=False).status_code == 200


@contextlib.contextmanager
def serving(
    env: dict[str, str], log_path: Path, token: str | None = None, host: str = "127.0.0.1"
) -> Iterator[ServiceProcess]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [*CLI, "serve", "--host", host, "--port", str(port)]
    with running(argv, f"edge-deploy serve on {port}", lambda: _healthy(url), log_path, env, timeout=60) as process:
        yield ServiceProcess(url, port, log_path, process, token)


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log_path: Path

    @property
    def name(self) -> str:
        return f"{socket.gethostname()}-{self.process.pid}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _reported_in(redis_url: str, process_holder: list[subprocess.Popen]) -> bool:
    if not process_holder:
        return False
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        return bool(client.exists(worker_key(f"{socket.gethostname()}-{process_holder[0].pid}")))


def start_worker(env: dict[str, str], log_path: Path) -> WorkerProcess:
    """A worker process that has reported in to the queue; stop it with `stop_worker` (or kill it)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [*CLI, "worker"], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker = WorkerProcess(process, log_path)
    try:
        wait_until(lambda: _reported_in(env["REDIS_URL"], [process]), "edge-deploy worker", timeout=60, proc=process)
    except RuntimeError as exc:
        stop(process)
        raise RuntimeError(f"{exc}; its log:\n{log_path.read_text()[-3000:]}") from None
    return worker


def stop_worker(worker: WorkerProcess) -> None:
    stop(worker.process, grace=30.0)
