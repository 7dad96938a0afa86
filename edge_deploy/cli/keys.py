"""`encrypt`, `decrypt`, `keygen`, `rewrap`, `inspect`: the encrypted model format from a shell.

Keys come from EDGE_KEY_<ID>, EDGE_KEY_<ID>_FILE and EDGE_KEY_DIR (or `--key-dir`), and the
sealing key id from EDGE_SEAL_KEY_ID: no other setting is read, so these commands work whatever
the rest of the environment holds. No command ever prints a key, except `keygen --stdout`, which
exists for piping into a secret store.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path

import click

from edge_deploy import crypto
from edge_deploy.errors import ConfigError

_SIZE = re.compile(r"\s*(\d+)\s*(b|kib|k|mib|m)?\s*", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2}


class ByteSize(click.ParamType):
    name = "size"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        match = _SIZE.fullmatch(value)
        if not match:
            self.fail(f"{value!r} is not a size such as 65536, 64KiB or 1MiB", param, ctx)
        return int(match[1]) * _UNITS[match[2] and match[2].lower()]


def _keyring(key_dir: Path | None) -> crypto.Keyring:
    return crypto.Keyring.load(key_dir or crypto.key_dir_from_env(), os.environ)


def _check_output(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to replace it")


def _emit(as_json: bool, data: dict[str, object], text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


key_dir_option = click.option(
    "--key-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory of key files, one per key id (default: EDGE_KEY_DIR).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
force_option = click.option("--force", is_flag=True, help="Replace the output if it exists.")


@click.command("encrypt")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Default: SRC.enc")
@click.option("--key-id", help="Key id of the KEK to seal under (default: EDGE_SEAL_KEY_ID).")
@click.option(
    "--chunk-size",
    type=ByteSize(),
    default=crypto.DEFAULT_CHUNK_SIZE,
    show_default=True,
    help="Plaintext bytes per chunk, e.g. 64KiB or 1MiB.",
)
@click.option("--checksums", is_flag=True, help="Also report the sha256 of SRC and of the output.")
@key_dir_option
@force_option
@json_option
def encrypt_command(
    src: Path,
    output: Path | None,
    key_id: str | None,
    chunk_size: int,
    checksums: bool,
    key_dir: Path | None,
    force: bool,
    as_json: bool,
) -> None:
    """Encrypt SRC into the edge-deploy format under a key-encryption key."""
    key_id = key_id or crypto.seal_key_id_from_env()
    output = output or src.with_name(src.name + crypto.ENCRYPTED_SUFFIX)
    _check_output(output, force)
    result = crypto.encrypt_file(src, output, _keyring(key_dir), key_id, chunk_size=chunk_size, checksums=checksums)
    text = f"encrypted {src} -> {output} (key id {key_id}, {result.plaintext_size} -> {result.ciphertext_size} bytes)"
    if checksums:
        text += f"\n  sha256 {result.plaintext_sha256}  {src}\n  sha256 {result.ciphertext_sha256}  {output}"
    _emit(as_json, {"source": str(src), "output": str(output), **asdict(result)}, text)


@click.command("decrypt")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Default: SRC without .enc")
@key_dir_option
@force_option
@json_option
def decrypt_command(src: Path, output: Path | None, key_dir: Path | None, force: bool, as_json: bool) -> None:
    """Decrypt SRC; the output appears (mode 0600) only once every chunk has been verified."""
    if output is None:
        if not src.name.endswith(crypto.ENCRYPTED_SUFFIX) or src.name == crypto.ENCRYPTED_SUFFIX:
            raise ConfigError(f"{src} has no {crypto.ENCRYPTED_SUFFIX} suffix to drop: pass --output")
        output = src.with_name(crypto.output_name(src.name))
    _check_output(output, force)
    result = crypto.decrypt_file(src, output, _keyring(key_dir))
    _emit(
        as_json,
        {"source": str(src), "output": str(output), **asdict(result)},
        f"decrypted {src} -> {output} (key id {result.key_id}, {result.plaintext_size} bytes)",
    )


@click.command("keygen")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the key here (mode 0600); in EDGE_KEY_DIR the file name is the key id.",
)
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the key (base64) to stdout instead.")
@click.option("--force", is_flag=True, help="Replace an existing key file (the old key is lost).")
def keygen_command(output: Path | None, to_stdout: bool, force: bool) -> None:
    """Make a new random 256-bit key-encryption key."""
    if (output is None) == (not to_stdout):
        raise ConfigError("say where the key goes: --output FILE, or --stdout to print it")
    key = crypto.generate_key()
    if to_stdout:
        click.echo(crypto.encode_key(key))
        return
    assert output is not None
    crypto.write_key_file(output, key, overwrite=force)
    hint = (
        f"; as a key in EDGE_KEY_DIR its id is {output.name!r} (or set {crypto.key_env_var(output.name)})"
        if crypto.is_valid_key_id(output.name)
        else f"; rename it to a valid key id ({crypto.KEY_ID_RULE}) to use it from EDGE_KEY_DIR"
    )
    click.echo(f"wrote a new key to {output} (mode 0600){hint}")


@click.command("rewrap")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "new_key_id", required=True, help="Key id of the new KEK.")
@key_dir_option
@json_option
def rewrap_command(files: tuple[Path, ...], new_key_id: str, key_dir: Path | None, as_json: bool) -> None:
    """Re-seal the data key of each FILE under a new KEK, in place; the encrypted body is unchanged.

    Both the old and the new key must be loaded. Each file is replaced atomically.
    """
    keyring = _keyring(key_dir)
    results = []
    for path in files:
        result = crypto.rewrap_file(path, keyring, new_key_id)
        results.append(asdict(result))
        if not as_json:
            click.echo(f"rewrapped {path}: key id {result.old_key_id} -> {result.new_key_id}")
    if as_json:
        click.echo(json.dumps(results, indent=2, sort_keys=True))


@click.command("inspect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def inspect_command(file: Path, as_json: bool) -> None:
    """Print the header of an encrypted FILE (no key needed, and no key shown)."""
    info = crypto.inspect_file(file)
    rows = [
        ("format version", info.version),
        ("key id", info.key_id),
        ("chunk size", f"{info.chunk_size} bytes"),
        ("chunks", info.chunks),
        ("header size", f"{info.header_size} bytes"),
        ("plaintext size", f"{info.plaintext_size} bytes (from the file length; verified when decrypted)"),
        ("file size", f"{info.ciphertext_size} bytes"),
    ]
    _emit(as_json, info.to_dict(), "\n".join([str(file), *(f"  {label:<15} {value}" for label, value in rows)]))


commands = [encrypt_command, decrypt_command, keygen_command, rewrap_command, inspect_command]
