"""A publishing process for the crash tests to kill: `python -m tests.storage.publisher_child SOURCE REPO BRANCH RUN`.

It reaches lakeFS through the LAKEFS_* variables and retries transient failures patiently (many
attempts, a second apart), so that a test can stall it at one step with injected 503s and then
SIGKILL it there.
"""

import sys
from pathlib import Path

from edge_deploy.config import Settings
from edge_deploy.retry import RetryPolicy
from edge_deploy.storage.store import LakeFSStore

PATIENT = RetryPolicy(attempts=300, base_delay=0.5, max_delay=1.0)


def main(source: str, repo: str, branch: str, run_id: str) -> None:
    store = LakeFSStore(Settings.from_env().require_lakefs(), retry=PATIENT)
    result = store.upload(Path(source), repo, branch, run_id=run_id, metadata={"run_id": run_id})
    print(result.commit_id, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
