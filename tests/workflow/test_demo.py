"""`edge-deploy demo` (what `make demo` runs): the whole workflow through pyflyte run, no servers."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_the_workflow_and_prints_a_passing_summary(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "MONGODB_", "REDIS_", "LAKEFS_"))}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_deploy.cli",
            "demo",
            "--sample",
            "fast-scnn",
            "--no-images",
            "--dir",
            str(tmp_path),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stdout[done.stdout.index("\nrun demo-") :]
    assert ": succeeded" in summary and "validation: PASSED" in summary and "images: none built" in summary
    report = next((tmp_path / "work" / "runs").glob("demo-*/edge/validation.html"))
    assert str(report) in summary and (report.parent / "record.json").is_file()
    assert (tmp_path / "keys" / "demo").stat().st_mode & 0o077 == 0  # the demo key is private
