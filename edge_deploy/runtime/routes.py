"""The runtime's endpoints: a request's bytes -> codecs -> the data plane -> a reply's bytes.

    GET  /healthz /readyz                     process alive / model loaded (503 while shutting down)
    GET  /v1/model                            the model: inputs, outputs, task, classes, providers
    POST /v1/predict                          a photo in, the task's answer out (see `answers`)
    POST /v1/infer                            tensors as .npz, .npy or JSON nested lists
    GET  /v2  /v2/health/live  /v2/health/ready
    GET  /v2/models/{name}[/versions/1]  .../ready
    POST /v2/models/{name}[/versions/1]/infer the Open Inference Protocol v2 (JSON and binary tensors)

Nothing here knows about sockets: `server` brings the bytes and sends the reply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

from edge_deploy.runtime.codecs import images, json_values, numpy_files, oip
from edge_deploy.runtime.dataplane import DataPlane, PredictOptions
from edge_deploy.runtime.refusals import BadInput, NotFound, Refused, UnsupportedMediaType


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = json_values.JSON
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(document: object, status: int = HTTPStatus.OK) -> Reply:
    return Reply(status, json_values.dumps(document))


def route(plane: DataPlane, request: Request) -> Reply:
    """The reply to `request`; a refusal becomes `{"error": reason}` with its status."""
    try:
        handler, arguments = _find(request)
        return handler(plane, request, *arguments)
    except Refused as exc:
        return json_reply({"error": str(exc)}, exc.status)


_MODEL = r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?"
Handler = Callable[..., Reply]


def _find(request: Request) -> tuple[Handler, tuple[str, ...]]:
    allowed = []
    for method, pattern, handler in _ROUTES:
        matched = pattern.fullmatch(request.path)
        if matched is None:
            continue
        if method == request.method:
            return handler, tuple(value for value in matched.groupdict().values())
        allowed.append(method)
    if allowed:
        raise _MethodNotAllowed(f"{request.path} takes {' or '.join(allowed)}")
    raise NotFound(f"no such path {request.path}; the runtime serves /v1/predict, /v1/infer and /v2 (see /v1/model)")


class _MethodNotAllowed(Refused):
    status = HTTPStatus.METHOD_NOT_ALLOWED


def _health(plane: DataPlane, _request: Request) -> Reply:
    return json_reply({"status": "ok"})


def _ready(plane: DataPlane, _request: Request) -> Reply:
    if plane.ready():
        return json_reply({"status": "ready", "model_sha256": plane.model.model_sha256})
    return json_reply({"status": "shutting down"}, HTTPStatus.SERVICE_UNAVAILABLE)


def _describe(plane: DataPlane, _request: Request) -> Reply:
    return json_reply(plane.describe())


def _predict(plane: DataPlane, request: Request) -> Reply:
    accepted = (*images.IMAGE_TYPES, images.NPY)
    if request.content_type not in accepted:
        raise UnsupportedMediaType(
            f"Content-Type {request.content_type or '(none)'} is not a photo; send one of {', '.join(accepted)}"
        )
    options = PredictOptions.from_query(request.query)
    frame = images.decode_frame(request.body, request.content_type, plane.limits.max_image_pixels)
    return json_reply(plane.predict(frame, options))


TENSOR_TYPES = (json_values.JSON, numpy_files.NPZ, numpy_files.NPY)


def _infer_v1(plane: DataPlane, request: Request) -> Reply:
    content_type = request.content_type
    if content_type not in TENSOR_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {content_type or '(none)'} is not accepted; use one of {', '.join(TENSOR_TYPES)}"
        )
    check = plane.check_input
    limits = plane.limits
    if content_type == numpy_files.NPZ:
        arrays = numpy_files.read_npz(request.body, limits.max_body_bytes, check)
    elif content_type == numpy_files.NPY:
        name = plane.only_input(f"{numpy_files.NPY} carries one array; send {numpy_files.NPZ}").name
        arrays = {name: numpy_files.read_npy(request.body, name, check)}
    else:
        arrays = _json_inputs(plane, request.body)
    outputs = plane.infer(arrays)
    if _reply_type(request) == numpy_files.NPZ:
        return Reply(HTTPStatus.OK, numpy_files.write_npz(outputs), numpy_files.NPZ)
    described = {
        name: {"dtype": value.dtype.name, "shape": list(value.shape), "data": json_values.array_values(value)}
        for name, value in outputs.items()
    }
    return json_reply({"model_sha256": plane.model.model_sha256, "outputs": described})


def _json_inputs(plane: DataPlane, body: bytes) -> dict:
    document = json_values.parse(body, plane.limits.max_json_elements)
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), dict):
        raise BadInput('expected a JSON object {"inputs": {"<input name>": <nested list>, ...}}')
    arrays = {}
    for name, value in document["inputs"].items():
        spec = plane.model.input_spec(name)
        if spec.dtype is None:
            raise BadInput(f"input {name!r} of type {spec.onnx_type} cannot be sent as JSON")
        arrays[name] = json_values.to_array(value, spec.dtype, f"input {name!r}")
    return arrays


def _reply_type(request: Request) -> str:
    accept = request.headers.get("Accept", "")
    if numpy_files.NPZ in accept:
        return numpy_files.NPZ
    if json_values.JSON in accept:
        return json_values.JSON
    return json_values.JSON if request.content_type == json_values.JSON else numpy_files.NPZ


def _server_metadata(plane: DataPlane, _request: Request) -> Reply:
    return json_reply(plane.server_metadata())


def _live(plane: DataPlane, _request: Request) -> Reply:
    return Reply(HTTPStatus.OK, b"")


def _server_ready(plane: DataPlane, _request: Request) -> Reply:
    return Reply(HTTPStatus.OK if plane.ready() else HTTPStatus.SERVICE_UNAVAILABLE, b"")


def _model_metadata(plane: DataPlane, _request: Request, name: str, version: str | None) -> Reply:
    plane.check_model(name, version)
    return json_reply(plane.model_metadata())


def _model_ready(plane: DataPlane, _request: Request, name: str, version: str | None) -> Reply:
    plane.check_model(name, version)
    return Reply(HTTPStatus.OK if plane.ready() else HTTPStatus.SERVICE_UNAVAILABLE, b"")


def _infer_v2(plane: DataPlane, request: Request, name: str, version: str | None) -> Reply:
    plane.check_model(name, version)
    if request.headers.get("Content-Encoding", "identity").lower() not in ("identity", ""):
        raise UnsupportedMediaType("compressed requests are not accepted: send them without Content-Encoding")
    header_length = request.headers.get(oip.HEADER_LENGTH)
    if header_length is not None and not header_length.strip().isdigit():
        raise BadInput(f"{oip.HEADER_LENGTH} {header_length!r} is not a byte count")
    decoded = oip.decode_request(
        request.body,
        int(header_length) if header_length is not None else None,
        {spec.name: spec for spec in plane.model.inputs},
        [spec.name for spec in plane.model.outputs],
        plane.limits.max_json_elements,
    )
    body, json_length = oip.encode_response(plane.name, decoded, plane.infer(decoded.inputs))
    if json_length is None:
        return Reply(HTTPStatus.OK, body)
    return Reply(HTTPStatus.OK, body, oip.BINARY_CONTENT_TYPE, {oip.HEADER_LENGTH: str(json_length)})


_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile(pattern), handler)
    for method, pattern, handler in [
        ("GET", "/healthz", _health),
        ("GET", "/readyz", _ready),
        ("GET", "/v1/model", _describe),
        ("POST", "/v1/predict", _predict),
        ("POST", "/v1/infer", _infer_v1),
        ("GET", "/v2", _server_metadata),
        ("GET", "/v2/health/live", _live),
        ("GET", "/v2/health/ready", _server_ready),
        ("GET", _MODEL, _model_metadata),
        ("GET", _MODEL + "/ready", _model_ready),
        ("POST", _MODEL + "/infer", _infer_v2),
    ]
]
