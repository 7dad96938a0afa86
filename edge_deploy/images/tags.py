"""Content-addressed image tags: the tag is a hash of everything that goes into the image.

Inputs: the base image id (the sha256 of its config, so a rebuilt base makes a new tag), the runtime
layer's wheel hashes, the model's plaintext sha256 and the key id it is sealed under, the runtime
code, the rendered Dockerfile, the model metadata and the labels (except `created`, which is a time).

The sealed file's own bytes are not an input: each sealing draws a fresh data key and nonce, so
hashing the ciphertext would make every pipeline run a new image. The plaintext sha256 + key id
say the same thing about what the device will run, and stay stable.
The same holds for the sealed file's detached signature (ECDSA draws a fresh nonce): the model
metadata names the key that signed it (its fingerprint), so signing, or another key, makes a new tag.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

TAG_DIGEST_LENGTH = 24  # hex characters of the content digest in the tag (96 bits)
VOLATILE_LABELS = ("org.opencontainers.image.created",)
_TAG_RULE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class TagInputs:
    device_class: str
    platform: str
    base_image_id: str
    runtime_layer_digest: str
    model_sha256: str
    key_id: str
    runtime_code_digest: str
    dockerfile_sha256: str
    model_metadata: Mapping[str, object] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        described = asdict(self)
        described["labels"] = {k: v for k, v in sorted(self.labels.items()) if k not in VOLATILE_LABELS}
        return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def content_tag(inputs: TagInputs) -> str:
    """`<device class>-<digest prefix>`, e.g. `arm64-cpu-3f2a9c...`: readable and unique per content."""
    tag = f"{inputs.device_class}-{inputs.digest()[:TAG_DIGEST_LENGTH]}"
    check_tag(tag)
    return tag


def check_tag(tag: str) -> str:
    if not _TAG_RULE.match(tag):
        raise ValueError(f"{tag!r} is not a valid image tag (letters, digits, '_', '.', '-'; at most 128)")
    return tag


def dockerfile_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
