"""Throughput and peak memory of the encrypted model format, next to raw AES-256-GCM.

    .venv/bin/python benchmarks/crypto_throughput.py [--size-mib 1024] [--chunk-sizes 64KiB,256KiB,1MiB,4MiB]

Measured in one run on this machine:
- raw: pyca AESGCM sealing and opening 16 MiB blocks in memory (the ceiling for the cipher);
- copy: reading and writing the same file with fsync (the ceiling for the disk);
- encrypt / decrypt of a file of --size-mib (default 1 GiB) for each chunk size, file to file
  (temp + fsync + rename, as the library does) and file to a discarding sink ("no disk": the
  format's own cost), and decrypt into memory (the edge runtime's path) for the default chunk size.
Each file operation runs in its own subprocess, so peak RSS (ru_maxrss) is that operation's.
The input file lives in the page cache (it was just written), as a freshly downloaded model does.
The temp directory and its files are deleted at the end.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

MIB = 1024 * 1024
RAW_BLOCK = 16 * MIB
KEY_VARIABLE = "EDGE_KEY_BENCH"


def parse_size(text: str) -> int:
    text = text.strip().lower()
    for suffix, factor in (("kib", 1024), ("mib", MIB)):
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)


def raw_aes_gcm(total: int) -> dict[str, float]:
    """MB/s of pyca AESGCM over 16 MiB blocks in memory, sealing and opening, in two styles:
    one-shot calls (a new 16 MiB result each time) and *_into calls (preallocated buffers)."""
    cipher = AESGCM(AESGCM.generate_key(256))
    block, nonce = os.urandom(RAW_BLOCK), os.urandom(12)
    sealed, opened = bytearray(RAW_BLOCK + 16), bytearray(RAW_BLOCK)
    blocks = max(1, total // RAW_BLOCK)
    cipher.decrypt(nonce, cipher.encrypt(nonce, block, None), None)  # warm up: first-touch page faults
    calls = {
        "encrypt one-shot": lambda: cipher.encrypt(nonce, block, None),
        "decrypt one-shot": lambda: cipher.decrypt(nonce, sealed_once, None),
        "encrypt into": lambda: cipher.encrypt_into(nonce, block, None, sealed),
        "decrypt into": lambda: cipher.decrypt_into(nonce, sealed, None, opened),
    }
    calls["encrypt into"]()  # `sealed` now holds a valid ciphertext for the decrypt calls
    sealed_once = bytes(sealed)
    speeds = {}
    for name, call in calls.items():
        start = time.perf_counter()
        for _ in range(blocks):
            call()
        speeds[name] = blocks * RAW_BLOCK / (time.perf_counter() - start) / 1e6
    return speeds


def make_input(path: Path, size: int) -> None:
    block = os.urandom(RAW_BLOCK)  # AES does not care what it encrypts; urandom for 1 GiB would dominate
    with path.open("wb") as out:
        remaining = size
        while remaining:
            remaining -= out.write(block[: min(remaining, RAW_BLOCK)])


class Discard:
    """A sink that drops what it is given: the format's cost without the disk's."""

    def write(self, data: bytes | memoryview) -> int:
        return len(data)


def child(operation: str, src: str, dst: str, chunk_size: int) -> None:
    """Run one operation in this fresh process and print its time and peak RSS as JSON."""
    from edge_deploy import crypto

    keyring = crypto.Keyring.load(None, {KEY_VARIABLE: os.environ[KEY_VARIABLE]})
    start = time.perf_counter()
    if operation == "encrypt":
        crypto.encrypt_file(src, dst, keyring, "bench", chunk_size=chunk_size)
    elif operation == "decrypt":
        crypto.decrypt_file(src, dst, keyring)
    elif operation == "encrypt (no disk)":
        with open(src, "rb") as source:
            crypto.encrypt_stream(source, Discard(), keyring, "bench", chunk_size=chunk_size)
    elif operation == "decrypt (no disk)":
        with open(src, "rb") as source:
            crypto.decrypt_stream(source, Discard(), keyring)
    elif operation == "decrypt-to-memory":
        model = crypto.decrypt_file_to_bytes(src, keyring)
        assert len(model) == os.path.getsize(dst)  # dst names the plaintext here, for the check
    elif operation == "copy":
        with open(src, "rb") as source, open(dst, "wb") as out:
            shutil.copyfileobj(source, out, MIB)
            out.flush()
            os.fsync(out.fileno())
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_rss_kib() / 1024}))


def peak_rss_kib() -> int:
    """This process's peak RSS. Not ru_maxrss: Linux carries that over exec from the parent (vfork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (this benchmark needs Linux)")


def measure(operation: str, src: Path, dst: Path, chunk_size: int, repeat: int, env: dict[str, str]) -> dict:
    """The best of `repeat` runs (each in a new process), with that run's peak RSS."""
    runs = []
    for _ in range(repeat):
        if operation != "decrypt-to-memory":
            dst.unlink(missing_ok=True)  # replacing last run's 1 GiB output would be timed too
        command = [sys.executable, __file__, "--child", operation, str(src), str(dst), str(chunk_size)]
        output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(output))
    return min(runs, key=lambda run: run["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-sizes", default="64KiB,256KiB,1MiB,4MiB")
    parser.add_argument("--repeat", type=int, default=2, help="runs per operation; the fastest is reported")
    parser.add_argument("--child", nargs=4, metavar=("OP", "SRC", "DST", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        operation, src, dst, chunk = args.child
        child(operation, src, dst, int(chunk))
        return

    from edge_deploy import crypto

    size = args.size_mib * MIB
    chunk_sizes = [parse_size(text) for text in args.chunk_sizes.split(",")]
    env = {**os.environ, KEY_VARIABLE: crypto.encode_key(crypto.generate_key())}

    raw_runs = [raw_aes_gcm(size) for _ in range(args.repeat)]
    raw_styles = {name: max(run[name] for run in raw_runs) for name in raw_runs[0]}
    print(f"raw AES-256-GCM, pyca, 16 MiB blocks in memory (best of {args.repeat}):")
    for name, speed in raw_styles.items():
        print(f"  {name:<17} {speed:>6.0f} MB/s")
    # the ratios below are against the faster style: the cipher's ceiling on this machine
    raw = {d: max(raw_styles[f"{d} one-shot"], raw_styles[f"{d} into"]) for d in ("encrypt", "decrypt")}
    print(f"file: {size / MIB:.0f} MiB; best of {args.repeat} runs per operation, each in its own process\n")
    header = f"{'operation':<18} {'chunk':>7} {'seconds':>8} {'MB/s':>7} {'peak RSS MiB':>13} {'vs raw AES-GCM':>15}"
    print(header)
    print("-" * len(header))

    def report(operation: str, chunk: str, result: dict, raw_speed: float | None) -> None:
        speed = size / result["seconds"] / 1e6
        ratio = f"{speed / raw_speed:.2f}" if raw_speed else "-"
        peak = result["peak_rss_mib"]
        print(f"{operation:<18} {chunk:>7} {result['seconds']:>8.2f} {speed:>7.0f} {peak:>13.1f} {ratio:>15}")

    with tempfile.TemporaryDirectory(prefix="crypto-bench-") as temp:
        plain, sealed, opened = Path(temp, "model.bin"), Path(temp, "model.bin.enc"), Path(temp, "opened.bin")
        make_input(plain, size)
        report("copy (disk)", "-", measure("copy", plain, opened, 0, args.repeat, env), None)
        opened.unlink()
        for chunk_size in chunk_sizes:
            label = f"{chunk_size // 1024}K" if chunk_size < MIB else f"{chunk_size // MIB}M"
            report("encrypt", label, measure("encrypt", plain, sealed, chunk_size, args.repeat, env), raw["encrypt"])
            report("decrypt", label, measure("decrypt", sealed, opened, chunk_size, args.repeat, env), raw["decrypt"])
            if not filecmp.cmp(opened, plain, shallow=False):
                raise SystemExit(f"round trip with {label} chunks changed the data")
            for operation, source, direction in (
                ("encrypt (no disk)", plain, "encrypt"),
                ("decrypt (no disk)", sealed, "decrypt"),
            ):
                result = measure(operation, source, Path(temp, "unused"), chunk_size, args.repeat, env)
                report(operation, label, result, raw[direction])
            if chunk_size == crypto.DEFAULT_CHUNK_SIZE:
                in_memory = measure("decrypt-to-memory", sealed, plain, chunk_size, args.repeat, env)
                report("decrypt-to-memory", label, in_memory, raw["decrypt"])
            opened.unlink()
            sealed.unlink()
    print(f"\ndefault chunk size: {crypto.DEFAULT_CHUNK_SIZE // MIB} MiB; temp files deleted")


if __name__ == "__main__":
    main()
