"""`edge-deploy encrypt|decrypt|keygen|rewrap|inspect` through the real command group."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edge_deploy import crypto
from edge_deploy.cli import cli

from .conftest import assert_no_key_in

COMMANDS = ["encrypt", "decrypt", "keygen", "rewrap", "inspect"]
USAGE, CRYPTO = 2, 4  # exit codes: a setting or option to fix; a sealed file or key that does not check out


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    directory.mkdir()
    return directory


@pytest.fixture
def run(key_dir: Path):
    """Invoke the CLI with keys from `key_dir` only, and check no key from there shows in any output."""
    outputs: list[str] = []

    def run(*args: str, **env: str) -> Result:
        environment = {"EDGE_KEY_DIR": str(key_dir), "EDGE_SEAL_KEY_ID": "edge-2026", **env}
        result = CliRunner().invoke(cli, list(args), env=environment)
        outputs.append(result.stdout + result.stderr)
        return result

    yield run
    keys = [crypto.decode_key(path.read_text(), "test") for path in key_dir.iterdir()]
    assert_no_key_in("\n".join(outputs), *keys)


def one_error_line(result: Result, exit_code: int) -> str:
    """The single `error: ...` line of a failure, which exits with `exit_code` (docs/user-guide.md, Exit codes)."""
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(run, command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.stdout


def test_keygen_encrypt_inspect_rewrap_decrypt(run, key_dir: Path, tmp_path: Path) -> None:
    keygen = run("keygen", "-o", str(key_dir / "edge-2026"))
    assert keygen.exit_code == 0, keygen.output
    assert "EDGE_KEY_EDGE_2026" in keygen.stdout
    assert (key_dir / "edge-2026").stat().st_mode & 0o777 == 0o600
    model = tmp_path / "end2end.onnx"
    model.write_bytes(os.urandom(200_000))

    encrypted = run("encrypt", str(model), "--chunk-size", "64KiB")
    assert encrypted.exit_code == 0, encrypted.output
    sealed = tmp_path / "end2end.onnx.enc"
    assert crypto.inspect_file(sealed).chunk_size == 64 * 1024

    inspected = run("inspect", str(sealed))
    assert inspected.exit_code == 0
    for expected in ("format version  1", "key id          edge-2026", "chunk size      65536 bytes", "200000 bytes"):
        assert expected in inspected.stdout
    as_json = json.loads(run("inspect", str(sealed), "--json").stdout)
    assert as_json["key_id"] == "edge-2026" and as_json["plaintext_size"] == 200_000 and as_json["chunks"] == 4

    assert run("keygen", "-o", str(key_dir / "edge-2027")).exit_code == 0
    rewrapped = run("rewrap", str(sealed), "--to", "edge-2027")
    assert rewrapped.exit_code == 0 and "edge-2026 -> edge-2027" in rewrapped.stdout

    (key_dir / "edge-2026").unlink()  # the old key is retired
    model.rename(tmp_path / "original.onnx")
    decrypted = run("decrypt", str(sealed), "--json")
    assert decrypted.exit_code == 0, decrypted.output
    assert json.loads(decrypted.stdout)["key_id"] == "edge-2027"
    assert model.read_bytes() == (tmp_path / "original.onnx").read_bytes()


def test_encrypt_under_an_explicit_key_id_and_output(run, key_dir: Path, tmp_path: Path) -> None:
    run("keygen", "-o", str(key_dir / "lake-source"))
    source = tmp_path / "epoch_1.pth"
    source.write_bytes(b"checkpoint")
    result = run("encrypt", str(source), "-o", str(tmp_path / "sealed"), "--key-id", "lake-source", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["key_id"] == "lake-source"
    assert crypto.is_encrypted(tmp_path / "sealed")


def test_keygen_to_stdout_only_when_asked(run, tmp_path: Path) -> None:
    printed = CliRunner().invoke(cli, ["keygen", "--stdout"])
    assert printed.exit_code == 0
    assert len(crypto.decode_key(printed.stdout, "stdout")) == 32
    assert "say where the key goes" in one_error_line(run("keygen"), USAGE)


def test_keygen_never_overwrites_a_key_without_force(run, key_dir: Path) -> None:
    assert run("keygen", "-o", str(key_dir / "edge-2026")).exit_code == 0
    before = (key_dir / "edge-2026").read_text()
    assert "already exists" in one_error_line(run("keygen", "-o", str(key_dir / "edge-2026")), USAGE)
    assert (key_dir / "edge-2026").read_text() == before
    assert run("keygen", "-o", str(key_dir / "edge-2026"), "--force").exit_code == 0
    assert (key_dir / "edge-2026").read_text() != before


def test_a_tampered_file_fails_with_one_line_and_no_output(run, key_dir: Path, tmp_path: Path) -> None:
    run("keygen", "-o", str(key_dir / "edge-2026"))
    model = tmp_path / "end2end.onnx"
    model.write_bytes(os.urandom(5000))
    run("encrypt", str(model), "--chunk-size", "1024")
    model.unlink()
    sealed = tmp_path / "end2end.onnx.enc"
    raw = bytearray(sealed.read_bytes())
    raw[crypto.read_header(sealed).size + 3 * (1024 + 16) + 10] ^= 0x40  # inside chunk 3
    sealed.write_bytes(raw)

    line = one_error_line(run("decrypt", str(sealed)), CRYPTO)

    assert "end2end.onnx.enc: chunk 3" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["end2end.onnx.enc", "keys"]


def test_failures_are_one_clear_line(run, key_dir: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(b"not sealed")
    assert "is not an edge-deploy encrypted file" in one_error_line(run("inspect", str(plain)), CRYPTO)
    assert "unknown key id 'edge-2026'" in one_error_line(run("encrypt", str(plain)), CRYPTO)
    assert "EDGE_SEAL_KEY_ID" in one_error_line(run("encrypt", str(plain), EDGE_SEAL_KEY_ID=""), USAGE)
    assert "no .enc suffix to drop: pass --output" in one_error_line(run("decrypt", str(plain)), USAGE)
    run("keygen", "-o", str(key_dir / "edge-2026"))
    (tmp_path / "plain.onnx.enc").write_bytes(b"occupied")
    assert "pass --force" in one_error_line(run("encrypt", str(plain)), USAGE)
    assert "pass --force" not in one_error_line(run("rewrap", str(plain), "--to", "edge-2026"), CRYPTO)


def test_the_crypto_commands_ignore_settings_they_do_not_use(run, key_dir: Path, tmp_path: Path) -> None:
    """A malformed MongoDB URI (or registry flag) in the environment does not stop encrypt or decrypt."""
    run("keygen", "-o", str(key_dir / "edge-2026"))
    model = tmp_path / "end2end.onnx"
    model.write_bytes(os.urandom(3000))
    broken = {"MONGODB_URI": "localhost:27017", "EDGE_REGISTRY_INSECURE": "perhaps"}
    assert run("encrypt", str(model), "-o", str(tmp_path / "sealed"), **broken).exit_code == 0
    assert run("decrypt", str(tmp_path / "sealed"), "-o", str(tmp_path / "opened"), **broken).exit_code == 0
    assert (tmp_path / "opened").read_bytes() == model.read_bytes()


def test_encrypt_reports_checksums_when_asked(run, key_dir: Path, tmp_path: Path) -> None:
    run("keygen", "-o", str(key_dir / "edge-2026"))
    model = tmp_path / "end2end.onnx"
    model.write_bytes(os.urandom(3000))
    result = json.loads(run("encrypt", str(model), "--checksums", "--json").stdout)
    assert result["plaintext_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert result["ciphertext_sha256"] == hashlib.sha256((tmp_path / "end2end.onnx.enc").read_bytes()).hexdigest()
