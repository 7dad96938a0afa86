"""Strict checkpoint loading: a checkpoint that does not fit the model config is an error naming the keys.

MMDeploy (through mmengine) loads checkpoints leniently and only logs missing keys, which would
export a half-random model.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from edge_deploy.conversion.errors import ConversionError, describe

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# How many key names an error quotes before it says "and N more".
KEYS_QUOTED = 5


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file; an unreadable file is a named error."""
    checkpoint = _load(path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state or not all(hasattr(v, "shape") for v in state.values()):
        raise ConversionError(
            "checkpoint load",
            f"checkpoint {Path(path).name} holds no state dict of tensors (expected a dict with 'state_dict')",
        )
    # Weights saved from a (Distributed)DataParallel wrapper carry a `module.` prefix (mmengine strips it too).
    return {key.removeprefix("module."): value for key, value in state.items()}


def checkpoint_meta(path: Path) -> dict:
    """The checkpoint's `meta` (mmengine keeps `dataset_meta` there), or {} when it has none."""
    checkpoint = _load(path)
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    return meta if isinstance(meta, dict) else {}


def _load(path: Path) -> object:
    import torch

    if not Path(path).is_file():
        raise ConversionError("checkpoint load", f"checkpoint {Path(path).name} does not exist")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise _corrupt(path, exc) from exc
        # Training checkpoints keep mmengine objects (message hub, dataset meta) beside the
        # weights; those need full unpickling. Model directories come from the team's own store.
        log.warning("%s holds Python objects beside its weights; unpickling it fully", Path(path).name)
        try:
            return torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as inner:
            raise _corrupt(path, inner) from inner
    except Exception as exc:
        raise _corrupt(path, exc) from exc


def _corrupt(path: Path, exc: BaseException) -> ConversionError:
    return ConversionError(
        "checkpoint load", f"checkpoint {Path(path).name} is not a readable PyTorch checkpoint: {describe(exc)}"
    )


def load_state_strictly(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    mismatched = [
        f"{key} (checkpoint {list(state[key].shape)}, model {list(expected[key].shape)})"
        for key in expected
        if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_quote(mismatched)}")
    result = model.load_state_dict(state, strict=False) if not mismatched else None
    if result is not None and result.missing_keys:
        problems.append(f"{len(result.missing_keys)} missing key(s): {_quote(result.missing_keys)}")
    if result is not None and result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected key(s): {_quote(result.unexpected_keys)}")
    if problems:
        raise ConversionError(
            "checkpoint load",
            f"checkpoint {source} does not match the model config ({type(model).__name__}): " + "; ".join(problems),
        )


def _quote(keys: list[str]) -> str:
    shown = ", ".join(keys[:KEYS_QUOTED])
    return shown + (f" and {len(keys) - KEYS_QUOTED} more" if len(keys) > KEYS_QUOTED else "")


@contextlib.contextmanager
def strict_checkpoint_loading(on_loaded: Callable[[], None] | None = None) -> Iterator[None]:
    """MMDeploy's task processors import mmengine's load_checkpoint at call time; swap it.

    `on_loaded` is called once the weights are in the model, so a caller can tell a later failure
    (export) from an earlier one (model build).
    """
    import mmengine.runner.checkpoint as checkpoint_module

    def load_checkpoint(model, filename, map_location=None, strict=False, logger=None, revise_keys=None):
        state = read_checkpoint(Path(filename))
        load_state_strictly(model, state, Path(filename).name)
        if on_loaded is not None:
            on_loaded()
        return {"state_dict": state}

    original = checkpoint_module.load_checkpoint
    checkpoint_module.load_checkpoint = load_checkpoint
    try:
        yield
    finally:
        checkpoint_module.load_checkpoint = original
