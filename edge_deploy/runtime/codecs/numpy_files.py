""".npy arrays and .npz archives, read so that a body costs no more than its size.

An .npy header states the shape and dtype; the array is created only after they are checked
against what the caller expects (`check`) and against the bytes actually sent, and then as a view
of the body (no copy). An .npz member is checked on its stated uncompressed size first (the sum
must stay under `max_unpacked_bytes`), then on its header, and only then read, never past that size.
Only the two compressions numpy writes (stored: `savez`; deflate: `savez_compressed`) are accepted;
a deflate stream is inflated in bounded steps by zipfile.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Callable
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from edge_deploy.runtime.refusals import BadInput, TooLarge

NPY = "application/x-npy"
NPZ = "application/x-npz"
MAX_HEADER_BYTES = 10_000  # numpy's own default limit for a header
ACCEPTED_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}

# check(name, shape, dtype) raises a refusal when an array of that shape and dtype would not do
Check = Callable[[str, tuple[int, ...], np.dtype], None]


def read_npy(body: bytes | memoryview, name: str, check: Check) -> np.ndarray:
    """The array an .npy body holds, as a read-only view of the body (`name`: what it is for)."""
    what = f"array {name!r}"
    source = io.BytesIO(body)
    shape, fortran_order, dtype = _read_header(source, what)
    check(name, shape, dtype)
    offset = source.tell()
    _expect_bytes(what, shape, dtype, len(body) - offset)
    return _view(body, offset, shape, fortran_order, dtype)


def read_npz(body: bytes | memoryview, max_unpacked_bytes: int, check: Check) -> dict[str, np.ndarray]:
    """The arrays of an .npz archive (numpy.savez or savez_compressed), named as stored (`x.npy` -> `x`)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise BadInput(f"the body is not a readable .npz archive: {exc}") from None
    with archive:
        names = [_member_name(info) for info in members]
        if len(set(names)) != len(names):
            raise BadInput("the .npz archive names an array twice")
        unpacked = sum(info.file_size for info in members)
        if unpacked > max_unpacked_bytes:
            raise TooLarge(
                f"the .npz archive unpacks to {unpacked} bytes; the limit is {max_unpacked_bytes} (EDGE_MAX_BODY_BYTES)"
            )
        return {name: _read_member(archive, info, name, check) for name, info in zip(names, members, strict=True)}


def _member_name(info: zipfile.ZipInfo) -> str:
    if info.compress_type not in ACCEPTED_COMPRESSION:
        raise BadInput(
            f".npz member {info.filename!r} uses compression method {info.compress_type}; "
            "only numpy's own (savez: stored, savez_compressed: deflate) are accepted"
        )
    if not info.filename.endswith(".npy"):
        raise BadInput(f".npz member {info.filename!r} is not an .npy array")
    return info.filename.removesuffix(".npy")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, check: Check) -> np.ndarray:
    what = f"array {name!r}"
    try:
        with archive.open(info) as member:
            shape, fortran_order, dtype = _read_header(member, what)
            check(name, shape, dtype)
            size = _expect_bytes(what, shape, dtype, info.file_size - member.tell())
            data = member.read(size)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:  # e.g. a CRC mismatch, a broken stream
        raise BadInput(f"the .npz archive cannot be read at {what}: {exc}") from None
    if len(data) != size:
        raise BadInput(f"{what} in the .npz archive ends after {len(data)} of its {size} bytes")
    return _view(data, 0, shape, fortran_order, dtype)


def _read_header(source: BinaryIO, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = npy_format.read_magic(source)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(source, max_header_size=MAX_HEADER_BYTES)
        else:
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(source, max_header_size=MAX_HEADER_BYTES)
    except (ValueError, EOFError, OSError, TypeError, SyntaxError) as exc:
        raise BadInput(f"{what} is not a readable .npy array: {exc}") from None
    if dtype.hasobject:
        raise BadInput(f"{what} holds Python objects (dtype {dtype}); only plain numeric arrays are accepted")
    return tuple(int(dim) for dim in shape), bool(fortran_order), dtype


def _expect_bytes(what: str, shape: tuple[int, ...], dtype: np.dtype, available: int) -> int:
    """The byte count `shape` and `dtype` need, which must be exactly what follows the header."""
    size = math.prod(shape) * dtype.itemsize
    if size != available:
        raise BadInput(
            f"{what}: its header says shape {list(shape)} of {dtype.name} ({size} bytes), "
            f"but {available} bytes follow the header"
        )
    return size


def _view(data: bytes | memoryview, offset: int, shape: tuple[int, ...], fortran: bool, dtype: np.dtype) -> np.ndarray:
    flat = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C")


def write_npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
