"""How the decrypted model reaches ONNX Runtime: never on a disk, in at most one plaintext copy.

ONNX Runtime's Python API opens a model from a path or from `bytes`, and `bytes` cannot be filled
in place (a buffer would have to be copied into one). Three ways, EDGE_DECRYPT_TO:

- `memory` (the default): decrypted into anonymous memory (transparent huge pages where the
  kernel offers them: 1 GiB faulted in in 0.10 s here, against 0.66 s for a memory file), a worker
  per CPU opening chunks into their places. ONNX Runtime takes the large weights from this memory
  in place (`in_memory`, edge_deploy.runtime.weights) and gets `bytes` of the rest only (the graph
  and its small tensors; all of the model, copied, where it cannot be split). It neither reads nor
  copies the weights: the fastest start. The memory then lives as long as the session, and where
  ONNX Runtime repacks a weight (MatMul and Gemm operands) its packed copy is held beside the
  plaintext, where from a file it would have dropped its own copy: up to the model's size more
  for as long as the runtime runs (benchmarks/edge_runtime_ready.py).
- `memory-copy`: decrypted into an anonymous memory file (memfd) that ONNX Runtime opens by path
  under /proc/self/fd and copies, as a plain file; the file is unmapped once the session exists:
  a slower start, then ONNX Runtime's own memory.
- `pipe` (for devices short of memory, CPU sessions only): a thread decrypts into a pipe that
  ONNX Runtime reads while it parses. No plaintext buffer exists at all, but ONNX Runtime reads a
  pipe in small pieces, so the session takes longer (see benchmarks/edge_runtime_ready.py). ONNX
  Runtime reads a model file once, front to back, which a pipe allows. Only `finish()` says
  whether every chunk was authenticated.
In every way, every chunk is authenticated before ONNX Runtime reads a byte (the pipe: before it
reads that chunk), and the sha256 is taken in a thread while ONNX Runtime parses (both hashlib and
ONNX Runtime release the GIL). A session that may be created twice (a GPU or NPU provider that
fails is retried on the CPU) never reads a pipe. Where /proc/self/fd or memfd is missing (not
Linux), a memory file's plaintext goes over as `bytes`, which costs a second copy for a moment.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import mmap
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from edge_deploy.crypto import Keyring, decrypt_file_to_memory
from edge_deploy.crypto.files import open_source
from edge_deploy.crypto.format import parse_header
from edge_deploy.crypto.stream import open_data_key, open_stream
from edge_deploy.errors import EdgeDeployError
from edge_deploy.runtime.config import SEALED_MODEL_NAME, RuntimeConfig
from edge_deploy.runtime.signature import check_signature

log = logging.getLogger(__name__)

PROC_FD = Path("/proc/self/fd")
PIPE_BYTES = 1024 * 1024  # 16 times fewer hand-overs between the decrypting thread and ONNX Runtime


class Plaintext:
    """The decrypted model as ONNX Runtime opens it (`source`) while the block lasts."""

    source: str | bytes

    def finish(self) -> str:
        """The plaintext's sha256, once all of it is decrypted and authenticated; or the error why not."""
        raise NotImplementedError

    def in_memory(self) -> memoryview | None:
        """All of the plaintext, where it lies in memory (None when it streams). Views of it stay
        valid after `close()`: the memory goes with the last of them."""
        return None

    def close(self) -> None:
        """Release what holds the plaintext."""

    def __enter__(self) -> Plaintext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_plaintext(sealed: Path, keyring: Keyring, *, decrypt_to: str = "memory", read_twice: bool) -> Plaintext:
    """The sealed model, decrypted for ONNX Runtime; `read_twice` when the session may be created
    again (which a pipe cannot serve)."""
    if decrypt_to == "memory":
        return _InMemory(sealed, keyring)
    if not PROC_FD.is_dir() or not hasattr(os, "memfd_create"):
        return _InBytes(sealed, keyring)
    if decrypt_to == "pipe" and not read_twice:
        return _Streamed(sealed, keyring)
    return _InMemoryFile(sealed, keyring)


def start_opening(config: RuntimeConfig) -> Opening | None:
    """Start decrypting the sealed model in the background (see `Opening`), once its signature is
    checked where that is required; None where there is nothing to start early: a pipe is fed while
    ONNX Runtime reads it, a plaintext directory is not sealed."""
    sealed = config.model_dir / SEALED_MODEL_NAME
    if config.decrypt_to == "pipe" or not sealed.is_file():
        return None

    def checked_keyring() -> Keyring:
        # in the opening's thread, so that a required signature is hashed while the imports run too,
        # and before the first byte is decrypted
        check_signature(config)
        return Keyring.load(config.key_dir, config.env)

    return Opening(sealed, checked_keyring, config.decrypt_to)


class Opening:
    """The sealed model being opened into memory (keys loaded, every chunk decrypted) in a thread,
    started before numpy and ONNX Runtime are imported: imports hold the GIL, decryption releases it,
    so the two overlap. `result()` waits, then returns the Plaintext or raises what opening raised."""

    def __init__(self, sealed: Path, load_keyring: Callable[[], Keyring], decrypt_to: str) -> None:
        self._decrypt_to = decrypt_to
        self._plaintext: Plaintext | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(sealed, load_keyring), name="edge-runtime-open", daemon=True
        )
        self._thread.start()

    def _run(self, sealed: Path, load_keyring: Callable[[], Keyring]) -> None:
        try:
            self._plaintext = open_plaintext(sealed, load_keyring(), decrypt_to=self._decrypt_to, read_twice=True)
        except BaseException as exc:  # handed to result()
            self._error = exc

    def wait(self) -> None:
        """Until the opening has finished or failed."""
        self._thread.join()

    def result(self) -> Plaintext:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._plaintext is not None
        return self._plaintext


class _Sha256InBackground:
    """The sha256 of `data`, taken in a thread: one `update` call, for which hashlib releases the
    GIL, so it runs beside ONNX Runtime's parse (which releases it too) on another core."""

    def __init__(self, data: memoryview) -> None:
        self._digest = hashlib.sha256()
        self._thread = threading.Thread(target=self._run, args=(data,), name="edge-runtime-sha256", daemon=True)
        self._thread.start()

    def _run(self, data: memoryview) -> None:
        with data:  # released here, so that its memory can be unmapped once this is joined
            self._digest.update(data)

    def hexdigest(self) -> str:
        self._thread.join()
        return self._digest.hexdigest()


class _Streamed(Plaintext):
    def __init__(self, sealed: Path, keyring: Keyring) -> None:
        name = str(sealed)
        with contextlib.ExitStack() as stack:  # a missing or wrong key shows now, before ONNX Runtime starts
            source = stack.enter_context(open_source(sealed))
            header = parse_header(source, name)
            data_cipher = open_data_key(header, keyring, name)
            opened = stack.pop_all()  # the thread closes it
        self._digest = hashlib.sha256()
        self._error: BaseException | None = None
        read_end, write_end = os.pipe()
        with contextlib.suppress(AttributeError, OSError):  # 1 MiB (the default cap for any user), not 64 KiB
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[attr-defined]
        self._read_end: int | None = read_end
        self.source = f"{PROC_FD}/{read_end}"
        decrypt = lambda: open_stream(source, pipe, header, data_cipher, name, self._digest.update)  # noqa: E731
        pipe = os.fdopen(write_end, "wb", buffering=0)
        self._thread = threading.Thread(target=self._run, args=(decrypt, opened, pipe), name="edge-runtime-decrypt")
        self._thread.start()

    def _run(self, decrypt: Callable[[], object], opened: contextlib.ExitStack, pipe: BinaryIO) -> None:
        try:
            with opened, pipe:  # closing the pipe ends ONNX Runtime's read, also after an error
                decrypt()
        except BaseException as exc:  # handed to finish()
            self._error = exc

    def finish(self) -> str:
        self._thread.join()
        if isinstance(self._error, BrokenPipeError):
            raise EdgeDeployError("ONNX Runtime stopped reading the model before its end") from None
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()

    def close(self) -> None:
        if self._read_end is not None:
            os.close(self._read_end)  # a writer still waiting on the pipe now fails and ends
            self._read_end = None
        self._thread.join()


class _InMemoryFile(Plaintext):
    def __init__(self, sealed: Path, keyring: Keyring) -> None:
        self._descriptor = os.memfd_create("edge-model", os.MFD_CLOEXEC)
        self._map: mmap.mmap | None = None
        self._sha256: _Sha256InBackground | None = None
        self.source = f"{PROC_FD}/{self._descriptor}"
        try:
            decrypt_file_to_memory(sealed, keyring, allocate=self._allocate)
        except BaseException:
            self.close()
            raise
        self._sha256 = _Sha256InBackground(memoryview(self._map))  # type: ignore[arg-type]

    def _allocate(self, size: int) -> mmap.mmap:
        if size == 0:
            raise EdgeDeployError("the sealed model is empty")
        os.ftruncate(self._descriptor, size)
        # not populated up front: the decrypting workers fault the pages in, on every core at once
        self._map = mmap.mmap(self._descriptor, size, flags=mmap.MAP_SHARED)
        return self._map

    def finish(self) -> str:
        assert self._sha256 is not None  # set once the model is decrypted, before `source` is read
        return self._sha256.hexdigest()

    def close(self) -> None:
        if self._sha256 is not None:
            self._sha256.hexdigest()  # the hashing thread still reads the mapping
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1


class _InMemory(Plaintext):
    def __init__(self, sealed: Path, keyring: Keyring) -> None:
        self._buffer: memoryview | None = memoryview(decrypt_file_to_memory(sealed, keyring)).cast("B")
        self._sha256 = _Sha256InBackground(self._buffer[:])

    @property
    def source(self) -> bytes:  # type: ignore[override]
        """All of the plaintext, copied: only for a model whose weights cannot be taken in place."""
        assert self._buffer is not None
        return bytes(self._buffer)

    def finish(self) -> str:
        return self._sha256.hexdigest()

    def in_memory(self) -> memoryview | None:
        return self._buffer

    def close(self) -> None:
        self._sha256.hexdigest()  # the hashing thread still reads the memory
        # Dropped, not unmapped: the session's weights are views of it and keep it while they live.
        self._buffer = None


class _InBytes(Plaintext):
    def __init__(self, sealed: Path, keyring: Keyring) -> None:
        self.source = bytes(decrypt_file_to_memory(sealed, keyring))
        self._sha256 = _Sha256InBackground(memoryview(self.source))

    def finish(self) -> str:
        return self._sha256.hexdigest()
