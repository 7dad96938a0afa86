"""`edge-deploy` exit codes by error class, one `error:` line, and the exception chain with -v."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from edge_deploy import cli, crypto
from edge_deploy.errors import EdgeDeployError

REPO = Path(__file__).resolve().parents[2]

# the "Exit codes" table of docs/user-guide.md, as a user reads it
EXPECTED = {
    "config": 2,
    "not-found": 3,
    "storage": 1,
    "corrupted": 4,
    "unknown-key": 4,
    "transient": 5,
    "records-down": 5,  # a record-store error and a transient one: transient wins
    "registry-down": 5,
    "gate": 6,
    "other": 1,
}

WITH_FAIL_COMMAND = (
    "import sys\n"
    "import edge_deploy.cli as cli\n"
    "cli.COMMANDS['fail'] = 'tests.cli.failing_command:fail'\n"
    "sys.argv = ['edge-deploy', *sys.argv[1:]]\n"
    "cli.main()\n"
)


def edge_deploy(*args: str, env: dict[str, str] | None = None, fail_command: bool = False):
    """Run the command line in a new process, as a user's shell does."""
    argv = (
        [sys.executable, "-c", WITH_FAIL_COMMAND, *args]
        if fail_command
        else [sys.executable, "-m", "edge_deploy.cli", *args]
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(argv, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)


def test_every_command_in_the_table_is_a_click_command_of_that_name() -> None:
    for name, target in cli.COMMANDS.items():
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command) and command.name == name, target


def test_every_error_class_in_the_exit_code_table_exists() -> None:
    for name, code in cli.EXIT_CODES:
        module, _, qualified_name = name.partition(":")
        error_class = getattr(importlib.import_module(module), qualified_name)
        assert issubclass(error_class, EdgeDeployError) and code not in (0, cli.EXIT_FAILED), name


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_error_class_exits_with_its_code_and_one_line(kind: str) -> None:
    done = edge_deploy("fail", kind, fail_command=True)
    assert done.returncode == EXPECTED[kind], done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr


def test_verbose_logs_the_exception_chain_before_the_error_line() -> None:
    done = edge_deploy("-v", "fail", "transient", fail_command=True)
    assert done.returncode == 5
    assert "Traceback" in done.stderr and "ConnectionResetError: the connection was reset" in done.stderr
    assert "direct cause of the following exception" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: lakeFS at http://lakefs unreachable"


def test_usage_errors_interrupts_and_bugs() -> None:
    assert edge_deploy("encrypt").returncode == 2  # missing argument: click's usage error
    assert edge_deploy("no-such-command").returncode == 2
    interrupted = edge_deploy("fail", "interrupt", fail_command=True)
    assert interrupted.returncode == 130 and interrupted.stderr.strip() == "interrupted"
    bug = edge_deploy("fail", "bug", fail_command=True)
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "ZeroDivisionError" in bug.stderr


def test_a_real_crypto_failure_with_verbose_shows_where_but_never_the_key(tmp_path: Path) -> None:
    key, other = crypto.generate_key(), crypto.generate_key()
    model = tmp_path / "model.onnx"
    model.write_bytes(os.urandom(5000))
    crypto.encrypt_file(model, tmp_path / "model.onnx.enc", crypto.Keyring({"edge-2026": key}), "edge-2026")
    wrong = {"EDGE_KEY_EDGE_2026": crypto.encode_key(other)}

    quiet = edge_deploy("decrypt", str(tmp_path / "model.onnx.enc"), "-o", str(tmp_path / "out"), env=wrong)
    verbose = edge_deploy("-v", "decrypt", str(tmp_path / "model.onnx.enc"), "-o", str(tmp_path / "out"), env=wrong)

    assert quiet.returncode == verbose.returncode == 4
    assert quiet.stderr.count("\n") == 1 and "does not open this file" in quiet.stderr
    assert "WrongKeyError" in verbose.stderr and "Traceback" in verbose.stderr
    for text in (quiet.stdout + quiet.stderr, verbose.stdout + verbose.stderr):
        assert crypto.encode_key(other) not in text and crypto.encode_key(key) not in text
    assert not (tmp_path / "out").exists()
