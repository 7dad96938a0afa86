"""The runtime's codecs on their own: bounded .npy/.npz reading, JSON limits, photo headers and decoding."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge_deploy.runtime.codecs import images, json_values, numpy_files
from edge_deploy.runtime.refusals import BadInput, TooLarge

PHOTO = Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"


def accept_anything(_name, _shape, _dtype) -> None:
    return None


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}".encode()
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def test_an_npy_header_that_claims_terabytes_is_refused_before_any_allocation():
    body = npy_header((1_000_000, 1_000_000, 1000)) + b"\0" * 64
    with pytest.raises(BadInput, match=r"\(4000000000000000 bytes\), but 64 bytes follow the header"):
        numpy_files.read_npy(body, "x", accept_anything)


def test_an_npy_array_is_a_view_of_the_body_in_its_own_order():
    array = np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4))
    buffer = io.BytesIO()
    np.save(buffer, array)
    read = numpy_files.read_npy(buffer.getvalue(), "x", accept_anything)
    np.testing.assert_array_equal(read, array)


def test_object_arrays_are_refused():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BadInput, match="Python objects"):
        numpy_files.read_npy(buffer.getvalue(), "x", accept_anything)


def test_the_check_runs_before_the_data_is_read():
    seen = []
    body = npy_header((2, 3)) + b"\0" * 24

    def refuse(name, shape, dtype):
        seen.append((name, shape, dtype.name))
        raise BadInput("no")

    with pytest.raises(BadInput, match="no"):
        numpy_files.read_npy(body, "images", refuse)
    assert seen == [("images", (2, 3), "float32")]


def zip_bomb(member_bytes: int) -> bytes:
    """An .npz whose one deflated member inflates to `member_bytes` of zeros (about 1000x smaller packed)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("x.npy", "w") as member:
        member.write(npy_header((member_bytes // 4,)))
        chunk = b"\0" * (1 << 20)
        for _ in range(member_bytes // len(chunk)):
            member.write(chunk)
    return buffer.getvalue()


def test_an_npz_that_inflates_past_the_limit_is_refused_on_its_stated_size():
    body = zip_bomb(96 << 20)
    assert len(body) < 1 << 20
    with pytest.raises(TooLarge, match=f"unpacks to {(96 << 20) + 128} bytes; the limit is {64 << 20}"):
        numpy_files.read_npz(body, 64 << 20, accept_anything)


def test_an_npz_member_whose_array_outgrows_its_stated_size_is_refused_unread():
    honest = zip_bomb(4 << 20)
    # shrink the stated uncompressed size (local header and central directory) to 1 KiB
    lying = bytearray(honest)
    info = zipfile.ZipFile(io.BytesIO(honest)).infolist()[0]
    for at in [i for i in range(len(lying) - 4) if lying[i : i + 4] in (b"PK\x03\x04", b"PK\x01\x02")]:
        if lying[at : at + 4] == b"PK\x03\x04":
            struct.pack_into("<I", lying, at + 22, 1024)
        else:
            struct.pack_into("<I", lying, at + 24, 1024)
    assert info.file_size == (4 << 20) + 128
    with pytest.raises(BadInput):
        numpy_files.read_npz(bytes(lying), 64 << 20, accept_anything)


def test_npz_with_a_compression_numpy_never_writes_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("x.npy", npy_header((1,)) + b"\0" * 4)
    with pytest.raises(BadInput, match="compression method 12"):
        numpy_files.read_npz(buffer.getvalue(), 1 << 20, accept_anything)


def test_savez_and_savez_compressed_round_trip():
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}
    for save in (np.savez, np.savez_compressed):
        buffer = io.BytesIO()
        save(buffer, **arrays)
        read = numpy_files.read_npz(buffer.getvalue(), 1 << 20, accept_anything)
        assert read.keys() == arrays.keys()
        for name, array in arrays.items():
            np.testing.assert_array_equal(read[name], array)


def test_json_element_counts_are_bounded_before_parsing():
    body = b"[" + b"0," * 999 + b"0]"
    assert json_values.parse(body, 1000) == [0] * 1000
    with pytest.raises(TooLarge, match="1001 JSON values; the limit is 1000"):
        json_values.parse(b"[" + b"0," * 1000 + b"0]", 1000)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_json_nan_and_infinity_are_refused(literal):
    with pytest.raises(BadInput, match="JSON has no"):
        json_values.parse(b"[1, " + literal + b"]", 10)


def test_non_finite_outputs_become_null_and_replies_stay_strict_json():
    values = json_values.array_values(np.array([1.5, np.nan, np.inf], dtype=np.float32))
    assert values == [1.5, None, None]
    assert json_values.dumps({"v": values}) == b'{"v":[1.5,null,null]}'


def test_photo_headers_give_format_and_size_without_decoding():
    jpeg = PHOTO.read_bytes()
    assert images.image_size(jpeg[:4096]) == ("JPEG", 512, 600)
    from PIL import Image

    for kind, params in (("PNG", {}), ("WebP", {"lossless": True}), ("WebP", {"quality": 80})):
        buffer = io.BytesIO()
        Image.new("RGB", (321, 123)).save(buffer, format=kind.upper(), **params)
        assert images.image_size(buffer.getvalue()) == (kind, 321, 123)


def test_a_photo_that_claims_too_many_pixels_is_refused_before_decoding():
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4000, 3000)).save(buffer, format="PNG")
    with pytest.raises(TooLarge, match="4000x3000; the limit is 1000000 pixels"):
        images.decode_frame(buffer.getvalue(), "image/png", max_pixels=1_000_000)


@pytest.mark.parametrize("body", [b"", b"GIF89a....", b"\xff\xd8\xff\xe0" + b"\0" * 20, PHOTO.read_bytes()[:2000]])
def test_corrupt_or_unknown_photos_are_bad_input(body):
    with pytest.raises(BadInput):
        images.decode_frame(body, "image/jpeg", max_pixels=10_000_000)


def test_decoded_photos_equal_opencvs_imdecode_as_openmmlab_loads_them():
    import cv2
    from skimage import data

    photos = {"grace_hopper.jpg": PHOTO.read_bytes()}
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        rgb = getattr(data, name)()
        for fmt in ("JPEG", "PNG"):
            buffer = io.BytesIO()
            __import__("PIL.Image").Image.fromarray(rgb).save(buffer, format=fmt, quality=90)
            photos[f"{name}.{fmt.lower()}"] = buffer.getvalue()
    for name, body in photos.items():
        ours = images.decode_frame(body, "image/jpeg", max_pixels=50_000_000)
        theirs = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert ours.shape == theirs.shape, name
        difference = np.abs(ours.astype(int) - theirs.astype(int))
        assert difference.max() <= 1 and (difference > 0).mean() < 0.01, (name, difference.max())
