"""The runtime hands a sealed model's large weights to ONNX Runtime in place: the split model must be
what onnx itself reads, the session's answers bit for bit those of ONNX Runtime on the plain file,
and the plaintext must live exactly as long as the session (EDGE_DECRYPT_TO=memory, the default).
With memory-copy, ONNX Runtime copies the model from a memory file that is gone once it has."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import weakref
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from edge_deploy.crypto import Keyring
from edge_deploy.runtime import plaintext as plaintext_module
from edge_deploy.runtime import weights
from edge_deploy.runtime.model import load_model
from tests.runtime.conftest import runtime_config
from tests.runtime.onnx_models import wide_model, write_sealed_model

TAKEN = {"dense", "half", "indices"}  # raw_data of >= 64 KiB; "typed" is in float_data


def test_split_takes_the_large_raw_initializers_and_onnx_reads_the_rest():
    model = wide_model()
    serialized = model.SerializeToString()
    parts = weights.split(memoryview(serialized))

    assert set(parts.initializers) == TAKEN
    originals = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    for name, array in parts.initializers.items():
        assert array.dtype == originals[name].dtype and np.array_equal(array, originals[name])
        assert not array.flags.owndata  # a view into the plaintext, not a copy

    stripped = onnx.load_from_string(parts.model)  # onnx's own parser reads what we wrote
    assert len(parts.model) < len(serialized) - 500_000
    by_name = {tensor.name: tensor for tensor in stripped.graph.initializer}
    for name in TAKEN:
        tensor = by_name[name]
        assert tensor.data_location == onnx.TensorProto.EXTERNAL and not tensor.raw_data
        assert list(tensor.dims) == list(originals[name].shape)
    assert np.array_equal(numpy_helper.to_array(by_name["typed"]), originals["typed"])
    assert stripped.graph.node == model.graph.node and stripped.opset_import == model.opset_import


def test_a_session_on_the_split_model_answers_as_on_the_plain_one():
    serialized = wide_model().SerializeToString()
    parts = weights.split(memoryview(serialized))
    options = ort.SessionOptions()
    values = [ort.OrtValue.ortvalue_from_numpy(array) for array in parts.initializers.values()]
    options.add_external_initializers(list(parts.initializers), values)
    in_place = ort.InferenceSession(parts.model, options, providers=["CPUExecutionProvider"])
    plain = ort.InferenceSession(serialized, providers=["CPUExecutionProvider"])

    vector = np.random.default_rng(0).standard_normal((3, 256)).astype(np.float32)
    for ours, theirs in zip(in_place.run(None, {"vector": vector}), plain.run(None, {"vector": vector}), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_what_is_not_a_model_is_refused_as_such_and_never_otherwise():
    serialized = wide_model().SerializeToString()
    for end in range(0, len(serialized), 997):  # cut anywhere: a length or a number runs past the end
        with contextlib.suppress(weights.WireFormatError):
            weights.split(memoryview(serialized[:end]))
    with pytest.raises(weights.WireFormatError, match="runs past"):
        weights.split(memoryview(serialized[:-10]))
    with pytest.raises(weights.WireFormatError, match="wire type"):
        weights.split(memoryview(b"\x0f\x00"))


def test_a_sealed_model_loads_with_its_weights_in_the_plaintext_memory(edge_key, tmp_path, monkeypatch):
    sealed = write_sealed_model(tmp_path, Keyring({edge_key.key_id: edge_key.key}), edge_key.key_id, model=wide_model())
    sources, plaintexts = _record_sources(monkeypatch), []
    real_decrypt = plaintext_module.decrypt_file_to_memory

    def decrypt_recording(*args, **kwargs):
        buffer = real_decrypt(*args, **kwargs)
        plaintexts.append(weakref.ref(buffer.obj))  # the anonymous memory the plaintext is in
        return buffer

    monkeypatch.setattr(plaintext_module, "decrypt_file_to_memory", decrypt_recording)
    model = load_model(runtime_config(sealed.model_dir, edge_key.env))

    [source] = sources
    assert isinstance(source, bytes) and len(source) < 200_000  # the graph and the float_data tensor only
    assert sum(value.numpy().nbytes for value in model.weights) == 256 * 256 * 4 + 256 * 256 * 2 + 16384 * 8
    [plaintext] = plaintexts
    start, size = _address(plaintext()), len(plaintext())
    assert all(start <= value.data_ptr() < start + size for value in model.weights)  # in place, not copies

    vector = np.random.default_rng(1).standard_normal((2, 256)).astype(np.float32)
    plain = ort.InferenceSession(str(sealed.plaintext_path), providers=["CPUExecutionProvider"])
    expected = plain.run(None, {"vector": vector})
    for ours, theirs in zip(model.run({"vector": vector}).values(), expected, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert model.model_sha256 == sealed.model_sha256

    del model
    gc.collect()
    assert plaintext() is None  # the plaintext's memory went with the session


def _record_sources(monkeypatch) -> list:
    """What each InferenceSession the runtime creates is created from."""
    sources = []
    real_session = ort.InferenceSession
    monkeypatch.setattr(
        "edge_deploy.runtime.model.ort.InferenceSession",
        lambda source, *args, **kwargs: sources.append(source) or real_session(source, *args, **kwargs),
    )
    return sources


def _address(memory) -> int:
    view = ctypes.c_char.from_buffer(memory)
    try:
        return ctypes.addressof(view)
    finally:
        del view  # an export would keep the memory alive


def _memory_file_descriptors() -> list[str]:
    links = (os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if fd.is_symlink())
    return [link for link in links if "memfd:edge-model" in link]


def test_with_memory_copy_onnx_runtime_copies_the_model_and_the_plaintext_goes(edge_key, tmp_path, monkeypatch):
    sealed = write_sealed_model(tmp_path, Keyring({edge_key.key_id: edge_key.key}), edge_key.key_id, model=wide_model())
    sources = _record_sources(monkeypatch)
    model = load_model(runtime_config(sealed.model_dir, {**edge_key.env, "EDGE_DECRYPT_TO": "memory-copy"}))

    [source] = sources
    assert isinstance(source, str) and source.startswith("/proc/self/fd/")  # the memory file, by path
    assert model.weights == () and not _memory_file_descriptors()  # closed and unmapped
    assert model.model_sha256 == sealed.model_sha256
