"""The photos the gate and the acceptance stage ask the model about.

A model directory may carry its own in `photos/` (JPEG, PNG or WebP from the device's domain: the
best evidence there is). Without them, real photographs that ship with matplotlib are used
(matplotlib comes with the OpenMMLab stack): Grace Hopper's portrait and a product photo.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from edge_deploy.errors import EdgeDeployError

PHOTOS_DIR = "photos"
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
BUILTIN = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")
MAX_PHOTOS = 16  # acceptance runs each through every target, emulated ones too
MAX_PHOTO_BYTES = 8 * 1024 * 1024


class PhotoError(EdgeDeployError):
    """The model directory's photos cannot be used."""


@dataclass(frozen=True)
class Photo:
    name: str  # file name, unique in the set
    media_type: str
    body: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def gate_photos(model_dir: Path | None = None) -> list[Photo]:
    """The model directory's `photos/`, sorted by name; else the built-in photos."""
    own = Path(model_dir, PHOTOS_DIR) if model_dir is not None else None
    if own is not None and own.is_dir():
        return read_photos(own)
    return builtin_photos()


def read_photos(directory: Path) -> list[Photo]:
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    unknown = [p.name for p in files if p.suffix.lower() not in MEDIA_TYPES]
    if unknown:
        raise PhotoError(f"{directory}: {', '.join(unknown)}: photos must be .jpg, .jpeg, .png or .webp")
    if not files:
        raise PhotoError(f"{directory} holds no photos; remove it to use the built-in ones")
    if len(files) > MAX_PHOTOS:
        raise PhotoError(f"{directory} holds {len(files)} photos; at most {MAX_PHOTOS} are used, choose them")
    photos = []
    for path in files:
        if path.stat().st_size > MAX_PHOTO_BYTES:
            raise PhotoError(f"{path} is larger than {MAX_PHOTO_BYTES // 1024 // 1024} MiB")
        photos.append(Photo(path.name, MEDIA_TYPES[path.suffix.lower()], path.read_bytes()))
    return photos


def builtin_photos() -> list[Photo]:
    import matplotlib  # imported here: only the gate's environment needs it

    sample_data = Path(matplotlib.get_data_path()) / "sample_data"
    missing = [name for name in BUILTIN if not (sample_data / name).is_file()]
    if missing:
        raise PhotoError(
            f"matplotlib's sample data lacks {', '.join(missing)}; put photos in the model's {PHOTOS_DIR}/"
        )
    return [Photo(name, MEDIA_TYPES[Path(name).suffix], (sample_data / name).read_bytes()) for name in BUILTIN]
