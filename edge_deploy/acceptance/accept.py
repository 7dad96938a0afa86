"""The verdict on one built image: run as a device on its platform, does it answer the gate's photos
as PyTorch did? Only an accepted image may be labelled, pushed and released (`images.push`).

A platform the build host cannot run is reported `not-run` with the reason: never a silent pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

from edge_deploy.acceptance.compare import PhotoAgreement, compare_answer, compare_tensors, predict_query
from edge_deploy.acceptance.device import DeviceRunError, DeviceSetup, run_as_device
from edge_deploy.acceptance.emulation import emulated_setup
from edge_deploy.acceptance.reference import TENSORS_DIR, PhotoReference, read_tensors
from edge_deploy.acceptance.render import acceptance_page
from edge_deploy.errors import EdgeDeployError
from edge_deploy.platforms import OciPlatform
from edge_deploy.runtime.config import DEFAULT_MODEL_NAME
from edge_deploy.runtime.refusals import PREDICT_OFF

ACCEPTED, FAILED, NOT_RUN = "accepted", "failed", "not-run"
NATIVE_REPEATS = 3  # requests per photo on a native platform, for the p50
EMULATED_PHOTOS = 1  # photos asked of an emulated platform (at least one; the record says how many)


class AcceptanceFailed(EdgeDeployError):
    """A built image did not answer as PyTorch did; it is not labelled, pushed or released."""

    stage = "accept"


@dataclass(frozen=True)
class TargetAcceptance:
    device_class: str
    platform: str
    status: str  # accepted | failed | not-run
    mode: str  # native | emulated | none
    photos: int  # photos asked
    compared: int  # classes, detections or pixels compared over all photos
    detail: str
    startup_s: float = 0.0
    p50_ms: float = 0.0
    image_bytes: int = 0
    open_inference_protocol: bool = False  # /v2 ready and the model's metadata answered
    seconds: float = 0.0  # the whole acceptance: start, questions, comparison, removal
    agreements: list[PhotoAgreement] = field(default_factory=list)  # /v1/predict, per photo
    # the photos' input tensors through /v2 infer, raw outputs against the exported model's
    tensor_agreements: list[PhotoAgreement] = field(default_factory=list)


def device_setup(client: docker.DockerClient, image: str, target_platform: str, host: OciPlatform) -> DeviceSetup | str:
    """How this host runs an image of `target_platform`: natively, or under qemu-user; else why it cannot."""
    target = OciPlatform.parse(target_platform)
    if (target.os, target.architecture) == (host.os, host.architecture):
        return DeviceSetup(str(target))
    return emulated_setup(client, image, target, host)


def accept_image(
    client: docker.DockerClient,
    image: str,
    device_class: str,
    target_platform: str,
    host: OciPlatform,
    reference_dir: Path,
    keys: dict[str, str],
    model_name: str = DEFAULT_MODEL_NAME,
    report_path: Path | None = None,
    environment: dict[str, str] | None = None,
) -> TargetAcceptance:
    """Run `image` as a device and compare its answers with the gate's photo reference in `reference_dir`."""
    started = time.monotonic()
    reference, photos = PhotoReference.read(reference_dir)
    size = int(client.images.get(image).attrs.get("Size", 0))
    base = dict(device_class=device_class, platform=target_platform, photos=len(photos), image_bytes=size)
    setup = device_setup(client, image, target_platform, host)
    if isinstance(setup, str):
        return TargetAcceptance(status=NOT_RUN, mode="none", compared=0, detail=setup, **base)
    mode = "emulated" if setup.entrypoint_prefix else "native"
    if mode == "emulated":  # a CPU emulated instruction by instruction: fewer questions, asked once
        photos = photos[:EMULATED_PHOTOS]
        base["photos"] = len(photos)
    names = {photo.name for photo in photos}
    tensors = {name: reference_dir / TENSORS_DIR / f"{name}.npz" for name in reference.tensors if name in names}
    try:
        run = run_as_device(
            client,
            image,
            keys,
            photos,
            predict_query(reference.task),
            model_name,
            setup=setup,
            repeats=NATIVE_REPEATS if mode == "native" else 1,
            tensors=tensors,
            environment=environment,
        )
    except DeviceRunError as exc:
        seconds = time.monotonic() - started
        return TargetAcceptance(status=FAILED, mode=mode, compared=0, detail=str(exc), seconds=seconds, **base)
    agreements = []
    for answer in reference.answers[: len(photos)]:
        error = run.errors.get(answer.photo)
        if error is not None and PREDICT_OFF in error and tensors:
            # serving.json says the runtime cannot replay this model's pipeline: only its tensors
            # can be compared, and are (below)
            agreements.append(PhotoAgreement(answer.photo, True, 0, f"task answers not compared: {error}"))
        elif error is not None or answer.photo not in run.answers:
            agreements.append(PhotoAgreement(answer.photo, False, 0, error or "the device gave no answer"))
        else:
            agreements.append(compare_answer(reference.task, answer, run.answers[answer.photo]))
    tensor_agreements = [
        compare_tensors(photo, reference.task, reference.tolerances, *read_tensors(reference_dir, photo), got)
        for photo, got in sorted(run.tensors.items())
    ]
    failed = [a for a in agreements + tensor_agreements if not a.passed]
    oip = run.oip_ready and bool(run.oip_model) and run.oip_model.get("name") == model_name
    if failed:
        detail = f"photo {failed[0].photo}: {failed[0].detail}"
    elif not oip:
        detail = f"the Open Inference Protocol endpoint does not serve model {model_name!r} (ready: {run.oip_ready})"
    else:
        detail = f"{len(agreements)} photos answered as PyTorch did ({reference.source})"
        if tensor_agreements:
            detail += f"; their tensors' raw outputs within the gate's tolerances ({len(tensor_agreements)} photos)"
    status = ACCEPTED if not failed and oip else FAILED
    if report_path is not None:  # the page with PyTorch's answer and the device's side by side
        page = acceptance_page(
            device_class,
            target_platform,
            f"{status}: {detail}",
            photos,
            {answer.photo: answer.answer for answer in reference.answers},
            run.answers,
            agreements,
            reference.classes,
        )
        temp = report_path.with_name(f".{report_path.name}.partial")
        temp.write_text(page)
        temp.replace(report_path)
    return TargetAcceptance(
        status=status,
        mode=mode,
        compared=sum(a.compared for a in agreements),
        detail=detail,
        startup_s=run.startup_s,
        p50_ms=run.p50_ms,
        open_inference_protocol=oip,
        agreements=agreements,
        tensor_agreements=tensor_agreements,
        seconds=time.monotonic() - started,
        **base,
    )
