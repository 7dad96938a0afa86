"""The acceptance page: each photo with PyTorch's answer and the device image's drawn on it, side by
side (boxes with names and scores, masks overlaid, the top-5 listed, label maps coloured), with the
verdict per photo. One self-contained HTML page (the images inline as PNG), shown as a Flyte Deck
and written beside the build's other outputs.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_deploy.acceptance.compare import DETECTION_THRESHOLD, PhotoAgreement
from edge_deploy.acceptance.photos import Photo
from edge_deploy.runtime.answers import decode_coco_rle

STYLE = """
.edge-acceptance{font-family:system-ui,sans-serif;font-size:14px;color:#222}
.edge-acceptance .pair{display:flex;gap:12px;flex-wrap:wrap;margin:6px 0 18px}
.edge-acceptance figure{margin:0}.edge-acceptance figcaption{font-weight:600;margin:2px 0}
.edge-acceptance img{width:440px;border:1px solid #ccc}
.edge-acceptance .pass{color:#0a7a28;font-weight:600}.edge-acceptance .fail{color:#b00020;font-weight:600}
"""

PYTORCH = "PyTorch (the OpenMMLab API)"


def palette(label: int) -> tuple[int, int, int]:
    """A stable, distinct colour per class."""
    rng = np.random.default_rng(label * 7919 + 17)
    return tuple(int(v) for v in rng.integers(40, 230, 3))


def draw(photo: Photo, answer: Mapping[str, Any], classes: Sequence[str]) -> bytes:
    """The photo with `answer` (the runtime's schema) drawn on it, as PNG bytes."""
    from PIL import Image, ImageDraw

    image = Image.open(io.BytesIO(photo.body)).convert("RGB")
    if "segmentation" in answer:
        image = _overlay_label_map(image, answer["segmentation"]["label_map"])
    detections = [d for d in answer.get("detections") or [] if d["score"] >= DETECTION_THRESHOLD]
    for found in detections:
        if "mask" in found:
            image = _overlay_mask(image, found["mask"], palette(found["label"]))
    canvas = ImageDraw.Draw(image)
    for found in detections:
        colour = palette(found["label"])
        canvas.rectangle(found["box"], outline=colour, width=max(2, image.width // 240))
        caption = f"{_name(classes, found['label'])} {found['score']:.2f}"
        canvas.text((found["box"][0] + 3, found["box"][1] + 2), caption, fill=colour)
    if "classes" in answer and "segmentation" not in answer:
        lines = [f"{_name(classes, c['label'])}: {c['score']:.3f}" for c in answer["classes"][:5]]
        canvas.rectangle([0, 0, image.width, 14 * len(lines) + 6], fill=(255, 255, 255))
        canvas.multiline_text((4, 3), "\n".join(lines), fill=(0, 0, 0), spacing=2)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def acceptance_page(
    device_class: str,
    platform: str,
    verdict: str,
    photos: Sequence[Photo],
    reference: Mapping[str, Mapping[str, Any]],
    device: Mapping[str, Mapping[str, Any]],
    agreements: Sequence[PhotoAgreement],
    classes: Sequence[str],
) -> str:
    """The page for one target: per photo, PyTorch's answer and the device's, and the comparison."""
    detail = {agreement.photo: agreement for agreement in agreements}
    rows = [
        f"<style>{STYLE}</style>",
        f"<h3>Acceptance of {html.escape(device_class)} ({html.escape(platform)}): {html.escape(verdict)}</h3>",
    ]
    for photo in photos:
        agreement = detail.get(photo.name)
        status = "pass" if agreement and agreement.passed else "fail"
        text = html.escape(agreement.detail if agreement else "not compared")
        rows.append(f'<p><b>{html.escape(photo.name)}</b>: <span class="{status}">{text}</span></p><div class="pair">')
        for title, answers in ((PYTORCH, reference), ("the device image", device)):
            rows.append(_figure(title, photo, answers.get(photo.name), classes))
        rows.append("</div>")
    return '<div class="edge-acceptance">' + "\n".join(rows) + "</div>"


def reference_section(directory: Path) -> str:
    """The gate's photos with PyTorch's answers drawn on them, for validation.html: what every
    target's image must then answer in acceptance. Empty when the gate has no photo reference."""
    from edge_deploy.acceptance.reference import REFERENCE_FILE, PhotoReference

    if not (directory / REFERENCE_FILE).is_file():
        return ""
    reference, photos = PhotoReference.read(directory)
    answers = {answer.photo: answer.answer for answer in reference.answers}
    figures = [_figure(photo.name, photo, answers.get(photo.name), reference.classes) for photo in photos]
    return (
        f'<style>{STYLE}</style><div class="edge-acceptance"><h3>Photos: the answers of {PYTORCH}</h3>'
        f"<p>{len(photos)} photos, answered by {html.escape(reference.source)}; each target's image must give "
        f'the same answers before it is released.</p><div class="pair">{"".join(figures)}</div></div>'
    )


def _figure(title: str, photo: Photo, answer: Mapping[str, Any] | None, classes: Sequence[str]) -> str:
    if answer is None:
        return f"<figure><figcaption>{html.escape(title)}</figcaption><p>no answer</p></figure>"
    data = base64.b64encode(draw(photo, answer, classes)).decode("ascii")
    return (
        f'<figure><figcaption>{html.escape(title)}</figcaption><img alt="{html.escape(photo.name)}: '
        f'{html.escape(title)}" src="data:image/png;base64,{data}"></figure>'
    )


def _name(classes: Sequence[str], label: int) -> str:
    return classes[label] if 0 <= label < len(classes) else str(label)


def _overlay_mask(image, rle: Mapping[str, Any], colour: tuple[int, int, int]):
    from PIL import Image

    mask = decode_coco_rle(rle)
    height, width = min(mask.shape[0], image.height), min(mask.shape[1], image.width)
    pixels = np.asarray(image).copy()
    region = pixels[:height, :width]
    on = mask[:height, :width]
    region[on] = (0.55 * region[on] + 0.45 * np.array(colour)).astype(np.uint8)
    return Image.fromarray(pixels)


def _overlay_label_map(image, png_base64: str):
    from PIL import Image

    labels = np.asarray(Image.open(io.BytesIO(base64.b64decode(png_base64))))
    colours = np.zeros((*labels.shape, 3), np.uint8)
    for label in np.unique(labels):
        colours[labels == label] = palette(int(label))
    pixels = np.asarray(image)
    if labels.shape != pixels.shape[:2]:
        return image
    return Image.fromarray((0.5 * pixels + 0.5 * colours).astype(np.uint8))
