"""`edge-deploy demo` (what `make demo` runs): the whole workflow as pyflyte run does it, no servers."""

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
    # The terminal reads well: one line per stage with its time, no library noise, no raw reprs.
    stage_ends = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("  ok ")]
    assert stage_ends[:5] == ["sample", "download", "decrypt", "convert", "validate"]
    assert stage_ends[-1] == "record" and {"platforms", "encrypt", "publish"} <= set(stage_ends)
    for noise in ("Warning", "mmengine", "DeploymentRecord(", "INFO"):
        assert noise not in done.stdout and noise not in done.stderr
    log_file = next((tmp_path / "logs").glob("demo-*.log"))
    assert "mmengine" in log_file.read_text()  # what the libraries said is kept, in the log
    summary = done.stdout[done.stdout.index("\nrun demo-") :]
    assert str(log_file) in summary
    assert ": succeeded" in summary and "validation: PASSED" in summary and "images: none built" in summary
    report = next((tmp_path / "work" / "runs").glob("demo-*/edge/validation.html"))
    assert str(report) in summary and (report.parent / "record.json").is_file()
    assert (tmp_path / "keys" / "demo").stat().st_mode & 0o077 == 0  # the demo key is private
