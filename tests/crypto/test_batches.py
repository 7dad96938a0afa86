"""Batched I/O: chunks are read, sealed and written a batch at a time, with a writer thread.

Most tests shrink the batch to three 64-byte chunks, so that small files cross many batch
boundaries (where a chunk could be lost, doubled or mistaken for the final one).
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest

from edge_deploy import crypto
from edge_deploy.crypto import stream

CHUNK = 64
PER_BATCH = 3
SIZES = [0, 1, CHUNK * PER_BATCH - 1, CHUNK * PER_BATCH, CHUNK * PER_BATCH + 1, CHUNK * 2 * PER_BATCH, 1000]
MIB = 1024 * 1024


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "BATCH_BYTES", CHUNK * PER_BATCH)


def worker_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "edge-deploy-crypto-worker"]


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize("size", SIZES)
def test_round_trips_across_batch_boundaries(size: int, tmp_path: Path, keyring: crypto.Keyring) -> None:
    data = os.urandom(size)
    plain, sealed, opened = tmp_path / "plain", tmp_path / "plain.enc", tmp_path / "opened"
    plain.write_bytes(data)

    sealed_result = crypto.encrypt_file(plain, sealed, keyring, "k1", chunk_size=CHUNK, checksums=True)
    opened_result = crypto.decrypt_file(sealed, opened, keyring)

    assert opened.read_bytes() == data
    assert crypto.decrypt_file_to_memory(sealed, keyring) == data
    assert crypto.decrypt_to_bytes(io.BytesIO(sealed.read_bytes()), keyring) == data  # length unknown: threaded
    assert sealed_result.chunks == opened_result.chunks == size // CHUNK + 1
    assert sealed_result.ciphertext_size == sealed.stat().st_size
    assert worker_threads() == []


@pytest.mark.usefixtures("small_batches")
def test_a_stream_of_unknown_length_is_framed_like_a_file(keyring: crypto.Keyring) -> None:
    data = os.urandom(CHUNK * 10 + 7)
    sealed = io.BytesIO()
    result = crypto.encrypt_stream(io.BytesIO(data), sealed, keyring, "k1", chunk_size=CHUNK)
    header = crypto.format.parse_header(io.BytesIO(sealed.getvalue()), "x")
    assert result.chunks == 11
    assert len(sealed.getvalue()) == result.ciphertext_size == header.size + len(data) + 11 * 16
    assert header.layout(len(sealed.getvalue()), "x") == (11, len(data))
    assert crypto.decrypt_to_bytes(io.BytesIO(sealed.getvalue()), keyring) == data


@pytest.mark.usefixtures("small_batches")
def test_a_flipped_bit_in_any_chunk_of_a_many_batch_file_names_that_chunk(
    seal, keyring: crypto.Keyring, tmp_path: Path
) -> None:
    sealed = seal(os.urandom(CHUNK * 7 + 10), chunk_size=CHUNK)
    raw = sealed.read_bytes()
    header_size = crypto.read_header(sealed).size
    for chunk in range(8):
        edited = bytearray(raw)
        edited[header_size + chunk * (CHUNK + 16) + 5] ^= 0x10
        sealed.write_bytes(edited)
        for decrypt in (
            lambda: crypto.decrypt_file(sealed, tmp_path / "opened", keyring),
            lambda: crypto.decrypt_file_to_memory(sealed, keyring),
        ):
            with pytest.raises(crypto.CorruptedDataError) as caught:
                decrypt()
            assert caught.value.chunk == chunk
        assert not (tmp_path / "opened").exists()


@pytest.mark.usefixtures("small_batches")
def test_truncation_and_appended_data_are_detected_across_batches(seal, keyring: crypto.Keyring) -> None:
    sealed = seal(os.urandom(CHUNK * 7 + 10), chunk_size=CHUNK)
    raw = sealed.read_bytes()
    header_size = crypto.read_header(sealed).size
    for kept in range(1, 8):  # cut at every chunk boundary, a batch boundary among them
        sealed.write_bytes(raw[: header_size + kept * (CHUNK + 16)])
        with pytest.raises(crypto.CorruptedDataError, match=f"ends after chunk {kept - 1} without a final chunk"):
            crypto.decrypt_stream(io.BytesIO(sealed.read_bytes()), io.BytesIO(), keyring)
        with pytest.raises(crypto.CorruptedDataError):
            crypto.decrypt_file_to_memory(sealed, keyring)
    for length in range(header_size, len(raw)):
        sealed.write_bytes(raw[:length])
        with pytest.raises(crypto.CryptoError):
            crypto.decrypt_file(sealed, sealed.with_name("opened"), keyring)
    for appended in (b"\0", raw[header_size : header_size + CHUNK + 16]):
        sealed.write_bytes(raw + appended)
        with pytest.raises(crypto.CorruptedDataError):
            crypto.decrypt_file_to_memory(sealed, keyring)


class FailingSink:
    """A disk that fills up: the second write fails with ENOSPC."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: memoryview) -> int:
        self.writes += 1
        if self.writes == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return len(data)


@pytest.mark.usefixtures("small_batches")
def test_a_failing_write_in_the_writer_thread_is_raised_to_the_caller(keyring: crypto.Keyring) -> None:
    data = os.urandom(CHUNK * 20)
    sealed = io.BytesIO()
    crypto.encrypt_stream(io.BytesIO(data), sealed, keyring, "k1", chunk_size=CHUNK)

    with pytest.raises(OSError, match="No space left") as opening:
        crypto.decrypt_stream(io.BytesIO(sealed.getvalue()), FailingSink(), keyring)
    with pytest.raises(OSError, match="No space left"):
        crypto.encrypt_stream(io.BytesIO(data), FailingSink(), keyring, "k1", chunk_size=CHUNK)

    assert opening.value.errno == errno.ENOSPC
    assert worker_threads() == []  # stopped, not left waiting


def test_decrypting_into_memory_allocates_the_plaintext_once(tmp_path: Path, keyring: crypto.Keyring) -> None:
    data = os.urandom(16 * MIB + 5)
    plain, sealed = tmp_path / "plain", tmp_path / "plain.enc"
    plain.write_bytes(data)
    crypto.encrypt_file(plain, sealed, keyring, "k1")
    sizes: list[int] = []

    def allocate(size: int) -> bytearray:
        sizes.append(size)
        return bytearray(size)

    tracemalloc.start()
    try:
        opened = crypto.decrypt_file_to_memory(sealed, keyring, allocate=allocate)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert sizes == [len(data)] and opened == data
    # the plaintext once, plus one batch of ciphertext per worker (the old path held the plaintext twice)
    workers = min(stream.MAX_WORKERS, stream._usable_cpus())
    assert peak < len(data) + workers * (stream.BATCH_BYTES + 64 * 1024) + 64 * 1024


def test_file_to_file_memory_stays_at_a_few_batches(tmp_path: Path, keyring: crypto.Keyring) -> None:
    data = os.urandom(48 * MIB)
    plain, sealed, opened = tmp_path / "plain", tmp_path / "plain.enc", tmp_path / "opened"
    plain.write_bytes(data)
    tracemalloc.start()
    try:
        crypto.encrypt_file(plain, sealed, keyring, "k1")
        crypto.decrypt_file(sealed, opened, keyring)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert opened.read_bytes() == data
    assert peak < 4 * (stream.BATCH_BYTES + MIB)  # two batches in, two out, whatever the file size


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize(("workers", "positional"), [(1, True), (2, True), (3, True), (4, True), (3, False)])
def test_workers_opening_into_memory_put_every_chunk_in_its_place(
    workers: int, positional: bool, seal, keyring: crypto.Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`positional=False`: where `os.preadv` is missing (not Linux or BSD), seek + read under a
    lock serves every worker."""
    monkeypatch.setattr(stream, "_usable_cpus", lambda: workers)
    if not positional:
        monkeypatch.delattr(os, "preadv")
    for size in [*SIZES, CHUNK * PER_BATCH * 7 + 5]:  # up to 8 batches: every worker takes several
        data = os.urandom(size)
        assert crypto.decrypt_file_to_memory(seal(data, chunk_size=CHUNK), keyring) == data
    assert worker_threads() == []


@pytest.mark.usefixtures("small_batches")
def test_with_several_workers_the_first_failing_chunk_is_the_one_named(
    seal, keyring: crypto.Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers run batches out of order; the error must still be the one a single reader finds."""
    monkeypatch.setattr(stream, "_usable_cpus", lambda: 3)
    sealed = seal(os.urandom(CHUNK * PER_BATCH * 6), chunk_size=CHUNK)
    raw = sealed.read_bytes()
    header_size = crypto.read_header(sealed).size
    for first, second in [(2, 16), (4, 5), (16, 17), (9, 18)]:  # 18: the final (empty) chunk
        edited = bytearray(raw)
        for chunk in (first, second):
            edited[header_size + chunk * (CHUNK + 16) + (1 if chunk < 18 else 0)] ^= 0x01
        sealed.write_bytes(edited)
        with pytest.raises(crypto.CorruptedDataError) as caught:
            crypto.decrypt_file_to_memory(sealed, keyring)
        assert caught.value.chunk == first
    assert worker_threads() == []


@pytest.mark.usefixtures("small_batches")
def test_a_file_that_shrinks_after_its_length_was_taken_is_refused(seal, keyring: crypto.Keyring) -> None:
    """The plaintext's size comes from the file's length; a file cut while it is opened must not
    leave the rest of the buffer silently zero."""
    data = os.urandom(CHUNK * PER_BATCH * 3)
    sealed = seal(data, chunk_size=CHUNK)
    with sealed.open("rb", buffering=0) as source:
        header = crypto.format.parse_header(source, "model")
        data_cipher = stream.open_data_key(header, keyring, "model")
        larger = memoryview(bytearray(len(data) + CHUNK * PER_BATCH))  # as if the file had been longer
        with pytest.raises(crypto.CorruptedDataError, match="model: truncated while it was read"):
            stream.open_into(source, header, data_cipher, larger, "model", workers=2)
    assert worker_threads() == []


def test_sealing_and_opening_through_a_named_pipe(tmp_path: Path, keyring: crypto.Keyring) -> None:
    """A source with no length (a FIFO): batches are read until the end, whatever each read returns."""
    data = os.urandom(3 * MIB + 11)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed(payload: bytes) -> threading.Thread:
        thread = threading.Thread(target=lambda: fifo.write_bytes(payload))
        thread.start()
        return thread

    writer = feed(data)
    sealed = crypto.encrypt_file(fifo, tmp_path / "sealed", keyring, "k1")
    writer.join()
    writer = feed((tmp_path / "sealed").read_bytes())
    opened = crypto.decrypt_file(fifo, tmp_path / "opened", keyring)
    writer.join()

    assert (tmp_path / "opened").read_bytes() == data
    assert sealed.plaintext_size == opened.plaintext_size == len(data)
    assert sealed.ciphertext_size == (tmp_path / "sealed").stat().st_size


FILE_SIZE_LIMIT = """
import os, resource, signal, sys
from edge_deploy import crypto
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))
keyring = crypto.Keyring({"k1": bytes.fromhex(os.environ["KEY"])})
try:
    crypto.decrypt_file(sys.argv[1], sys.argv[2], keyring)
except crypto.CryptoError as error:
    print(error)
"""


def test_an_output_the_disk_cannot_hold_fails_cleanly(tmp_path: Path, key_one: bytes) -> None:
    """A write the disk refuses is one clear error, and nothing is left behind."""
    keyring = crypto.Keyring({"k1": key_one})
    (tmp_path / "plain").write_bytes(os.urandom(4 * MIB))
    (tmp_path / "out").mkdir()
    crypto.encrypt_file(tmp_path / "plain", tmp_path / "sealed", keyring, "k1")
    done = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT, str(tmp_path / "sealed"), str(tmp_path / "out" / "opened")],
        env={**os.environ, "KEY": key_one.hex(), "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr  # a clean error, not a crash
    assert "writing" in done.stdout and "File too large" in done.stdout
    assert list((tmp_path / "out").iterdir()) == []
