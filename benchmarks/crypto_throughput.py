"""Sealed models at disk speed: the command line against `cp`, and the library against raw AES-GCM.

    .venv/bin/python benchmarks/crypto_throughput.py [--size-mib 1024] [--repeat 5] [--chunk-sizes 1MiB] [--dir D]

Everything is measured in one run, on one file of --size-mib random bytes (default 1 GiB) in the
page cache (it was just written, as a freshly downloaded model is), and read as ratios: a shared
machine moves the seconds, much less the ratios. Each timed operation is its own process; its
peak RSS is that process's VmHWM. Before each run the page cache is flushed (`os.sync`, untimed),
so no run pays for an earlier run's writes.

1. The command line, `--repeat` rounds, each round running every operation once in turn; medians:
   - `cp SRC DST && sync DST`: the copy with the fsync that durability needs (the disk's ceiling);
   - `edge-deploy decrypt` and `edge-deploy encrypt` of the same file (fsync, then rename);
   - `edge-deploy --version` (the start-up every command pays), and `python -c pass` beside it.
   Targets: decrypt and encrypt <= 1.2x cp+fsync with peak RSS <= 64 MiB; --version < 0.3 s idle.
2. In process (best of --repeat, each in a new process):
   - raw pyca AES-256-GCM in memory, 16 MiB blocks, one-shot calls and `*_into` calls on
     preallocated buffers (the cipher's ceiling on one core), and `decrypt_into` on a thread per
     CPU (pyca releases the GIL: the ceiling on all cores);
   - decrypt into memory (`decrypt_file_to_memory`, the edge runtime's path), with its peak RSS
     above the process's baseline as a multiple of the plaintext, against both ceilings (it opens
     the chunks on every core); beside it, the time to allocate and first touch a buffer of the
     same size in one thread (what any in-memory result costs the kernel);
   - file-to-file encrypt and decrypt, and the same into a discarding sink ("no disk": the
     format's own cost), for each of --chunk-sizes.
   Targets: decrypt into memory >= 0.5x raw AES-GCM (the one-core figure, as the target was set);
   peak RSS <= 1.1x the plaintext above baseline.
The files live in a temp directory under --dir (default: the system's; it should be a disk, not
tmpfs, for the fsync to mean anything), deleted at the end.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import mmap
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout, installed or not

MIB = 1024 * 1024
RAW_BLOCK = 16 * MIB
KEY_ID = "bench"
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # Linux >= 5.14; the mmap module names it from 3.13
KEY_VARIABLE = "EDGE_KEY_BENCH"

# Runs `edge-deploy ARGS...` as the console script does, and writes the process's peak RSS at exit.
CLI_PROBE = """
import atexit, os, runpy, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(os.environ["PEAK_RSS_FILE"], "w").write(line.split()[1])
atexit.register(peak)
sys.argv = ["edge-deploy", *sys.argv[1:]]
runpy.run_module("edge_deploy.cli", run_name="__main__")
"""


def parse_size(text: str) -> int:
    text = text.strip().lower()
    for suffix, factor in (("kib", 1024), ("mib", MIB)):
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)


def status_kib(field: str) -> int:
    """A field of this process's /proc/self/status (VmRSS, VmHWM), in KiB. Not ru_maxrss: Linux
    carries that over exec from the parent (vfork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (this benchmark needs Linux)")


def raw_aes_gcm(total: int) -> dict[str, float]:
    """MB/s of pyca AESGCM over 16 MiB blocks in memory: one-shot calls (a new result each time)
    and *_into calls (preallocated buffers)."""
    cipher = AESGCM(AESGCM.generate_key(256))
    block, nonce = os.urandom(RAW_BLOCK), os.urandom(12)
    sealed, opened = bytearray(RAW_BLOCK + 16), bytearray(RAW_BLOCK)
    blocks = max(1, total // RAW_BLOCK)
    cipher.encrypt_into(nonce, block, None, sealed)
    cipher.decrypt_into(nonce, sealed, None, opened)  # warm up: first-touch page faults
    sealed_once = bytes(sealed)
    calls = {
        "encrypt one-shot": lambda: cipher.encrypt(nonce, block, None),
        "decrypt one-shot": lambda: cipher.decrypt(nonce, sealed_once, None),
        "encrypt into": lambda: cipher.encrypt_into(nonce, block, None, sealed),
        "decrypt into": lambda: cipher.decrypt_into(nonce, sealed, None, opened),
    }
    speeds = {}
    for name, call in calls.items():
        start = time.perf_counter()
        for _ in range(blocks):
            call()
        speeds[name] = blocks * RAW_BLOCK / (time.perf_counter() - start) / 1e6
    threads = os.cpu_count() or 1
    outputs = [bytearray(RAW_BLOCK) for _ in range(threads)]
    for output in outputs:
        cipher.decrypt_into(nonce, sealed, None, output)
    workers = [
        threading.Thread(target=lambda out=out: [cipher.decrypt_into(nonce, sealed, None, out) for _ in range(blocks)])
        for out in outputs
    ]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    speeds[f"decrypt into, {threads} threads"] = threads * blocks * RAW_BLOCK / (time.perf_counter() - start) / 1e6
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
    """Run one operation in this fresh process; print its seconds and peak RSS (and the RSS before
    the operation, to tell the operation's memory from the interpreter's) as JSON."""
    from edge_deploy import crypto

    keyring = crypto.Keyring.load(None, {KEY_VARIABLE: os.environ[KEY_VARIABLE]})
    before = status_kib("VmRSS")
    start = time.perf_counter()
    if operation == "encrypt":
        crypto.encrypt_file(src, dst, keyring, KEY_ID, chunk_size=chunk_size)
    elif operation == "decrypt":
        crypto.decrypt_file(src, dst, keyring)
    elif operation == "encrypt (no disk)":
        with open(src, "rb", buffering=0) as source:
            crypto.encrypt_stream(source, Discard(), keyring, KEY_ID, chunk_size=chunk_size)
    elif operation == "decrypt (no disk)":
        with open(src, "rb", buffering=0) as source:
            crypto.decrypt_stream(source, Discard(), keyring)
    elif operation == "decrypt into memory":
        model = crypto.decrypt_file_to_memory(src, keyring)
        assert len(model) == os.path.getsize(dst)  # dst names the plaintext here, for the check
    elif operation == "allocate + touch":
        buffer = crypto.files.anonymous_memory(os.path.getsize(dst))  # the default buffer, its pages faulted in:
        buffer.obj.madvise(MADV_POPULATE_WRITE)  # in one call, as fast as one thread touches memory
        assert len(buffer) == os.path.getsize(dst)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mib": status_kib("VmHWM") / 1024, "before_mib": before / 1024}))


def timed(argv: list[str], env: dict[str, str], peak_file: Path | None = None) -> dict[str, float]:
    """Seconds of one command, started after the page cache was flushed; peak RSS if it reports one."""
    os.sync()
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    result = {"seconds": time.perf_counter() - start}
    if peak_file is not None:
        result["peak_rss_mib"] = int(peak_file.read_text()) / 1024
    return result


def command_line(plain: Path, sealed: Path, temp: Path, repeat: int, env: dict[str, str]) -> None:
    peak_file = temp / "peak"
    cli_env = {**env, "PEAK_RSS_FILE": str(peak_file), "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-c", CLI_PROBE]
    out = temp / "out.bin"
    operations = {
        "cp + fsync": lambda: timed(["sh", "-c", 'cp "$0" "$1" && sync "$1"', str(plain), str(out)], env),
        "edge-deploy decrypt": lambda: timed([*cli, "decrypt", str(sealed), "-o", str(out)], cli_env, peak_file),
        "edge-deploy encrypt": lambda: timed(
            [*cli, "encrypt", str(plain), "-o", str(out), "--key-id", KEY_ID], cli_env, peak_file
        ),
        "edge-deploy --version": lambda: timed([*cli, "--version"], cli_env, peak_file),
        "python -c pass": lambda: timed([sys.executable, "-c", "pass"], env),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in operations}
    names = list(operations)
    for round_index in range(repeat):
        for name in names[round_index % len(names) :] + names[: round_index % len(names)]:  # rotate the order
            out.unlink(missing_ok=True)
            runs[name].append(operations[name]())
    out.unlink(missing_ok=True)
    copies = [run["seconds"] for run in runs["cp + fsync"]]
    print(f"command line, {repeat} rounds (each operation once per round, order rotated), medians:")
    header = f"  {'operation':<24} {'seconds':>8} {'vs cp+fsync':>12} {'same round':>11} {'peak RSS MiB':>13}"
    print(header + "\n  " + "-" * (len(header) - 2))
    for name, results in runs.items():
        seconds = statistics.median(run["seconds"] for run in results)
        # the ratio within each round, where cp met the same load, then its median
        paired = statistics.median(run["seconds"] / copy for run, copy in zip(results, copies, strict=True))
        peaks = [run["peak_rss_mib"] for run in results if "peak_rss_mib" in run]
        peak = f"{max(peaks):>13.1f}" if peaks else f"{'-':>13}"
        print(f"  {name:<24} {seconds:>8.3f} {seconds / statistics.median(copies):>12.2f} {paired:>11.2f} {peak}")


def in_process(
    plain: Path, sealed: Path, temp: Path, size: int, chunk_sizes: list[int], repeat: int, env: dict[str, str]
) -> None:
    from edge_deploy import crypto

    raw_runs = [raw_aes_gcm(size) for _ in range(repeat)]
    raw_styles = {name: max(run[name] for run in raw_runs) for name in raw_runs[0]}
    print(f"\nraw AES-256-GCM, pyca, 16 MiB blocks in memory (best of {repeat}):")
    for name, speed in raw_styles.items():
        print(f"  {name:<26} {speed:>6.0f} MB/s")
    all_cores = next(speed for name, speed in raw_styles.items() if "threads" in name)
    # ratios are against the faster style: the cipher's ceiling on this machine
    raw = {d: max(raw_styles[f"{d} one-shot"], raw_styles[f"{d} into"]) for d in ("encrypt", "decrypt")}

    def measure(operation: str, src: Path, dst: Path, chunk_size: int = 0) -> dict:
        runs = []
        for _ in range(repeat):
            if operation in ("encrypt", "decrypt"):
                dst.unlink(missing_ok=True)
            os.sync()
            command = [sys.executable, __file__, "--child", operation, str(src), str(dst), str(chunk_size)]
            runs.append(json.loads(subprocess.run(command, env=env, check=True, capture_output=True).stdout))
        return min(runs, key=lambda run: run["seconds"])

    print(f"\nin process, file of {size / MIB:.0f} MiB, best of {repeat} (each run in its own process):")
    header = f"  {'operation':<22} {'chunk':>6} {'seconds':>8} {'MB/s':>6} {'peak RSS MiB':>13} {'vs raw AES-GCM':>15}"
    print(header + "\n  " + "-" * (len(header) - 2))

    def report(operation: str, chunk: str, result: dict, raw_speed: float | None) -> None:
        speed = size / result["seconds"] / 1e6
        ratio = f"{speed / raw_speed:.2f}" if raw_speed else "-"
        line = f"  {operation:<22} {chunk:>6} {result['seconds']:>8.3f} {speed:>6.0f} {result['peak_rss_mib']:>13.1f}"
        print(f"{line} {ratio:>15}")

    in_memory = measure("decrypt into memory", sealed, plain)
    report("decrypt into memory", f"{crypto.DEFAULT_CHUNK_SIZE // MIB}M", in_memory, raw["decrypt"])
    touch = measure("allocate + touch", sealed, plain)
    report("allocate + touch", "-", touch, None)
    above = in_memory["peak_rss_mib"] - in_memory["before_mib"]
    print(
        f"  decrypt into memory: peak RSS {above:.0f} MiB above the process's baseline "
        f"= {above * MIB / size:.2f}x the plaintext; {size / in_memory['seconds'] / 1e6 / all_cores:.2f}x "
        "raw AES-GCM on all cores"
    )
    for chunk_size in chunk_sizes:
        label = f"{chunk_size // 1024}K" if chunk_size < MIB else f"{chunk_size // MIB}M"
        resealed, opened = temp / "resealed.enc", temp / "opened.bin"
        report("encrypt file", label, measure("encrypt", plain, resealed, chunk_size), raw["encrypt"])
        report("decrypt file", label, measure("decrypt", resealed, opened, chunk_size), raw["decrypt"])
        if not filecmp.cmp(opened, plain, shallow=False):
            raise SystemExit(f"round trip with {label} chunks changed the data")
        opened.unlink()
        report("encrypt, no disk", label, measure("encrypt (no disk)", plain, temp / "x", chunk_size), raw["encrypt"])
        report("decrypt, no disk", label, measure("decrypt (no disk)", resealed, temp / "x"), raw["decrypt"])
        resealed.unlink()
    batch = crypto.stream.BATCH_BYTES // MIB
    print(f"  default chunk size: {crypto.DEFAULT_CHUNK_SIZE // MIB} MiB; reads and writes of {batch} MiB batches")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-sizes", default="1MiB", help="e.g. 64KiB,256KiB,1MiB,4MiB")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the command line; runs per in-process figure")
    parser.add_argument("--dir", type=Path, help="where the temp files go (default: the system temp directory)")
    parser.add_argument("--child", nargs=4, metavar=("OP", "SRC", "DST", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        operation, src, dst, chunk = args.child
        child(operation, src, dst, int(chunk))
        return

    from edge_deploy import crypto

    size = args.size_mib * MIB
    env = {**os.environ, KEY_VARIABLE: crypto.encode_key(crypto.generate_key())}
    keyring = crypto.Keyring.load(None, {KEY_VARIABLE: env[KEY_VARIABLE]})
    print(f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="crypto-bench-", dir=args.dir) as directory:
        temp = Path(directory)
        plain, sealed = temp / "model.bin", temp / "model.bin.enc"
        make_input(plain, size)
        crypto.encrypt_file(plain, sealed, keyring, KEY_ID)
        command_line(plain, sealed, temp, args.repeat, env)
        chunk_sizes = [parse_size(text) for text in args.chunk_sizes.split(",")]
        in_process(plain, sealed, temp, size, chunk_sizes, args.repeat, env)
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; temp files deleted")


if __name__ == "__main__":
    main()
