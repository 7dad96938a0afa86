"""The HTTP face of the test lakeFS server: lakeFS's REST API v1 (base path /api/v1), basic auth.

Paths, parameters, status codes and bodies follow lakeFS's OpenAPI document. Any other path under
/api/v1, and any known path with a method or an option this server does not implement, answers
501 {"message": "not implemented by the test lakeFS server: ..."}, so nothing passes by accident.
Boolean query parameters are parsed as Go's strconv.ParseBool does (lakefs-sdk sends `True`).
Requests that carry an AWS signature go to the S3 gateway on the same port (tests/lakefs_server/gateway.py).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import io
import json
import re
import shutil
import socket
import sys
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from typing import BinaryIO, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from botocore.exceptions import ClientError
from werkzeug.formparser import parse_form_data

from tests.fixtures.faults import FaultAwareServer, FaultInjectingHandler
from tests.lakefs_server.gateway import S3Gateway, error_body
from tests.lakefs_server.model import ApiError, Entry, MergeConflict, bad_request
from tests.lakefs_server.service import MAX_PER_PAGE, LakeFSService, object_stats
from tests.lakefs_server.sigv4 import is_aws_signed
from tests.lakefs_server.wire import ChunkReader, RangeNotSatisfiable, parse_go_bool, parse_range

API_PREFIX = "/api/v1"
DEFAULT_PER_PAGE = 100  # DefaultPerPage in lakeFS's controller
SERVER_VERSION = "1.88.0"
METADATA_HEADER_PREFIX = "x-lakefs-meta-"
SPOOL_IN_MEMORY = 8 * 1024 * 1024


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: str
    public: bool = False


def _route(method: str, template: str, handler: str, public: bool = False) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return Route(method, re.compile(f"^{regex}$"), handler, public)


ROUTES = [
    _route("GET", "/healthcheck", "health_check", public=True),
    _route("GET", "/config", "get_config"),
    _route("GET", "/config/version", "get_lakefs_version"),
    _route("GET", "/repositories", "list_repositories"),
    _route("POST", "/repositories", "create_repository"),
    _route("GET", "/repositories/{repository}", "get_repository"),
    _route("GET", "/repositories/{repository}/branches", "list_branches"),
    _route("POST", "/repositories/{repository}/branches", "create_branch"),
    _route("GET", "/repositories/{repository}/branches/{branch}", "get_branch"),
    _route("DELETE", "/repositories/{repository}/branches/{branch}", "delete_branch"),
    _route("POST", "/repositories/{repository}/branches/{branch}/commits", "commit"),
    _route("GET", "/repositories/{repository}/branches/{branch}/diff", "diff_branch"),
    _route("POST", "/repositories/{repository}/branches/{branch}/objects", "upload_object"),
    _route("DELETE", "/repositories/{repository}/branches/{branch}/objects", "delete_object"),
    _route("GET", "/repositories/{repository}/tags", "list_tags"),
    _route("POST", "/repositories/{repository}/tags", "create_tag"),
    _route("GET", "/repositories/{repository}/tags/{tag}", "get_tag"),
    _route("GET", "/repositories/{repository}/commits/{commit_id}", "get_commit"),
    _route("GET", "/repositories/{repository}/refs/{ref}/commits", "log_commits"),
    _route("POST", "/repositories/{repository}/refs/{source_ref}/merge/{destination_branch}", "merge_into_branch"),
    _route("GET", "/repositories/{repository}/refs/{left_ref}/diff/{right_ref}", "diff_refs"),
    _route("GET", "/repositories/{repository}/refs/{ref}/objects", "get_object"),
    _route("HEAD", "/repositories/{repository}/refs/{ref}/objects", "head_object"),
    _route("GET", "/repositories/{repository}/refs/{ref}/objects/stat", "stat_object"),
    _route("GET", "/repositories/{repository}/refs/{ref}/objects/ls", "list_objects"),
]


def not_implemented(what: str) -> ApiError:
    return ApiError(501, f"not implemented by the test lakeFS server: {what}")


class LakeFSHandler(FaultInjectingHandler):
    service: ClassVar[LakeFSService]
    credentials: ClassVar[tuple[str, str]]
    gateway: ClassVar[S3Gateway]

    def setup(self) -> None:
        super().setup()
        # Go's net/http (lakeFS) turns Nagle off; with it on, a response written as headers then body
        # meets the client's delayed ACK and every request stalls for ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _for_gateway(self) -> bool:
        return is_aws_signed(self.headers, parse_qs(urlsplit(self.path).query))

    def fault_error_body(self, status: int) -> tuple[str, bytes]:
        message = f"injected fault: HTTP {status}"
        if self._for_gateway():
            code = {403: "AccessDenied", 404: "NoSuchKey", 503: "SlowDown"}.get(status, "InternalError")
            return "application/xml", error_body(code, message, self.gateway.region)
        return "application/json", json.dumps({"message": message}).encode() + b"\n"

    # -- plumbing ----------------------------------------------------------------------------------------------

    def handle_api_request(self) -> None:
        if self._for_gateway():
            self.gateway.handle(self)
            return
        self.body_consumed = False
        split = urlsplit(self.path)
        self.query = parse_qs(split.query, keep_blank_values=True)
        try:
            if not split.path.startswith(API_PREFIX + "/"):
                raise ApiError(404, "not found")
            api_path = split.path[len(API_PREFIX) :]
            route, params = self._match(api_path)
            if route is None or not route.public:
                self._authenticate()
            if route is None:
                raise not_implemented(f"{self.command} {split.path}")
            getattr(self, route.handler)(**params)
        except MergeConflict:
            self.send_json(409, {"reference": ""})  # lakeFS answers a conflict with an empty MergeResult
        except ApiError as exc:
            self._send_error(exc.status, exc.message)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self._send_error(500, f"internal error in the test lakeFS server: {exc!r}")

    def _match(self, api_path: str) -> tuple[Route | None, dict[str, str]]:
        for route in ROUTES:
            found = route.pattern.match(api_path)
            if found and route.method == self.command:
                return route, {name: unquote(value) for name, value in found.groupdict().items()}
        return None, {}

    def _authenticate(self) -> None:
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        try:
            key_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            key_id, secret = "", ""
        expected_id, expected_secret = self.credentials
        valid = hmac.compare_digest(key_id.encode(), expected_id.encode()) and hmac.compare_digest(
            secret.encode(), expected_secret.encode()
        )
        if scheme.lower() != "basic" or not valid:
            raise ApiError(401, "error authenticating request")

    def _send_error(self, status: int, message: str) -> None:
        if self.response_started:  # the failure came in the middle of a body: all we can do is cut it
            self.close_connection = True
            return
        if not self.body_consumed and self._has_request_body():
            self.close_connection = True  # never read an upload we are refusing anyway
        self.send_json(status, {"message": message})

    def _has_request_body(self) -> bool:
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        return chunked or int(self.headers.get("Content-Length") or 0) > 0

    def send_json(self, status: int, payload: object) -> None:
        self.send_bytes(status, json.dumps(payload).encode() + b"\n", "application/json")

    def send_empty(self, status: int) -> None:
        self.send_streamed(status, [], 0, ())

    def json_body(self, *required: str) -> dict:
        raw = self.read_request_body()
        self.body_consumed = True
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise bad_request(f"request body has an error: failed to decode request body: {exc}") from None
        if not isinstance(body, dict):
            raise bad_request("request body has an error: doesn't match schema: value must be an object")
        for name in required:
            if name not in body:
                raise bad_request(f'request body has an error: doesn\'t match schema: property "{name}" is missing')
        return body

    def param(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    def required_param(self, name: str) -> str:
        if name not in self.query:
            raise bad_request(f'parameter "{name}" in query has an error: value is required but missing')
        return self.param(name)

    def bool_param(self, name: str, default: bool) -> bool:
        value = self.param(name, "")
        if value == "":
            return default
        try:
            return parse_go_bool(value)
        except ValueError:
            raise bad_request(f'parameter "{name}" in query has an error: value {value}: an invalid boolean') from None

    def amount_param(self) -> int:
        raw = self.param("amount", "")
        if raw == "":
            return DEFAULT_PER_PAGE
        try:
            amount = int(raw)
        except ValueError:
            raise bad_request(f'parameter "amount" in query has an error: value {raw} is not an integer') from None
        if amount < -1 or amount > MAX_PER_PAGE:
            raise bad_request(f'parameter "amount" in query has an error: number must be between -1 and {MAX_PER_PAGE}')
        return amount if amount > 0 else DEFAULT_PER_PAGE

    def _reject_options(self, *names: str) -> None:
        """Options this server does not implement: any value for them answers 501."""
        for name in names:
            if self.param(name, ""):
                raise not_implemented(f"the {name!r} option of {self.command} {urlsplit(self.path).path}")

    def _reject_flags(self, *names: str) -> None:
        """Boolean options this server does not implement: false is fine, true answers 501."""
        for name in names:
            if self.bool_param(name, False):
                raise not_implemented(f"the {name!r} option of {self.command} {urlsplit(self.path).path}")

    # -- endpoints: server ---------------------------------------------------------------------------------------

    def health_check(self) -> None:
        self.send_empty(204)

    def _version_config(self) -> dict[str, object]:
        return {"version": SERVER_VERSION, "version_context": "lakefs test server", "upgrade_recommended": False}

    def get_config(self) -> None:
        storage = {
            "blockstore_type": "s3",
            "blockstore_namespace_example": "s3://example-bucket/",
            "blockstore_namespace_ValidityRegex": "^s3://",
            "pre_sign_support": False,
            "pre_sign_support_ui": False,
            "import_support": False,
            "import_validity_regex": "^s3://",
            "pre_sign_multipart_upload": False,
        }
        self.send_json(200, {"version_config": self._version_config(), "storage_config": storage})

    def get_lakefs_version(self) -> None:
        self.send_json(200, self._version_config())

    # -- endpoints: repositories, branches, tags, commits ---------------------------------------------------------

    def list_repositories(self) -> None:
        self._reject_options("search")
        self.send_json(
            200, self.service.list_repositories(self.param("prefix"), self.param("after"), self.amount_param())
        )

    def create_repository(self) -> None:
        self._reject_flags("bare")
        body = self.json_body("name", "storage_namespace")
        if body.get("sample_data") or body.get("read_only"):
            raise not_implemented("sample_data and read_only repositories")
        fields = (body["name"], body["storage_namespace"], body.get("default_branch") or "main")
        if not all(isinstance(value, str) for value in fields):
            raise bad_request("request body has an error: name, storage_namespace and default_branch must be strings")
        self.send_json(201, self.service.create_repository(*fields))

    def get_repository(self, repository: str) -> None:
        self.send_json(200, self.service.repository(repository).to_json())

    def list_branches(self, repository: str) -> None:
        self._reject_flags("show_hidden")
        page = self.service.list_branches(repository, self.param("prefix"), self.param("after"), self.amount_param())
        self.send_json(200, page)

    def create_branch(self, repository: str) -> None:
        body = self.json_body("name", "source")
        if body.get("force") or body.get("hidden"):
            raise not_implemented("force and hidden branch creation")
        if not isinstance(body["name"], str) or not isinstance(body["source"], str):
            raise bad_request("request body has an error: name and source must be strings")
        commit_id = self.service.create_branch(repository, body["name"], body["source"])
        self.send_bytes(201, commit_id.encode(), "text/html")  # the spec's 201 answer is the commit id as text

    def get_branch(self, repository: str, branch: str) -> None:
        self.send_json(200, self.service.get_branch(repository, branch))

    def list_tags(self, repository: str) -> None:
        self.send_json(
            200, self.service.list_tags(repository, self.param("prefix"), self.param("after"), self.amount_param())
        )

    def create_tag(self, repository: str) -> None:
        body = self.json_body("id", "ref")
        if body.get("force"):
            raise not_implemented("force tag creation")
        if not isinstance(body["id"], str) or not isinstance(body["ref"], str):
            raise bad_request("request body has an error: id and ref must be strings")
        self.send_json(201, self.service.create_tag(repository, body["id"], body["ref"]))

    def get_tag(self, repository: str, tag: str) -> None:
        self.send_json(200, self.service.get_tag(repository, tag))

    def get_commit(self, repository: str, commit_id: str) -> None:
        self.send_json(200, self.service.get_commit(repository, commit_id))

    def log_commits(self, repository: str, ref: str) -> None:
        self._reject_options("objects", "prefixes", "since", "stop_at")
        self.bool_param("limit", False)  # only a hint about how many results to expect
        first_parent = self.bool_param("first_parent", False)
        page = self.service.log_commits(repository, ref, self.param("after"), self.amount_param(), first_parent)
        self.send_json(200, page)

    def commit(self, repository: str, branch: str) -> None:
        self._reject_options("source_metarange")
        body = self.json_body("message")
        if body.get("force"):
            raise not_implemented("forced commits")
        message, metadata, date = body["message"], body.get("metadata") or {}, body.get("date")
        if not isinstance(message, str):
            raise bad_request("request body has an error: message must be a string")
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise bad_request("request body has an error: metadata must map strings to strings")
        if date is not None and (not isinstance(date, int) or isinstance(date, bool)):
            raise bad_request("request body has an error: date must be an integer (Unix epoch seconds)")
        allow_empty = bool(body.get("allow_empty", False))
        self.send_json(201, self.service.commit(repository, branch, message, metadata, date, allow_empty))

    def diff_branch(self, repository: str, branch: str) -> None:
        page = self.service.diff_branch(
            repository,
            branch,
            self.param("prefix"),
            self.param("after"),
            self.amount_param(),
            self.param("delimiter"),
        )
        self.send_json(200, page)

    def delete_branch(self, repository: str, branch: str) -> None:
        self._reject_flags("force")
        self.service.delete_branch(repository, branch)
        self.send_empty(204)

    def merge_into_branch(self, repository: str, source_ref: str, destination_branch: str) -> None:
        body = self.json_body() if self._has_request_body() else {}
        if body.get("force"):
            raise not_implemented("forced merges (read-only repositories)")
        message, metadata, strategy = body.get("message") or "", body.get("metadata") or {}, body.get("strategy") or ""
        if not isinstance(message, str) or not isinstance(strategy, str):
            raise bad_request("request body has an error: message and strategy must be strings")
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise bad_request("request body has an error: metadata must map strings to strings")
        if not message:
            message = f"Merge '{source_ref}' into '{destination_branch}'"  # lakeFS's default message
        reference = self.service.merge(
            repository,
            source_ref,
            destination_branch,
            message,
            metadata,
            strategy,
            allow_empty=bool(body.get("allow_empty")),
            squash=bool(body.get("squash_merge")),
        )
        self.send_json(200, {"reference": reference})

    def diff_refs(self, repository: str, left_ref: str, right_ref: str) -> None:
        self._reject_flags("include_right_stats")
        kind = self.param("type", "three_dot")
        if kind not in ("two_dot", "three_dot"):
            raise bad_request(f'parameter "type" in query has an error: value is not one of the allowed values: {kind}')
        page = (self.param("prefix"), self.param("after"), self.amount_param(), self.param("delimiter"))
        self.send_json(200, self.service.diff_refs(repository, left_ref, right_ref, kind == "three_dot", page))

    # -- endpoints: objects ------------------------------------------------------------------------------------

    def list_objects(self, repository: str, ref: str) -> None:
        self._reject_flags("presign")
        page = self.service.list_objects(
            repository,
            ref,
            self.param("prefix"),
            self.param("after"),
            self.param("delimiter"),
            self.amount_param(),
            self.bool_param("user_metadata", True),
        )
        self.send_json(200, page)

    def stat_object(self, repository: str, ref: str) -> None:
        self._reject_flags("presign")
        entry = self.service.stat_object(repository, ref, self.required_param("path"))
        self.send_json(200, object_stats(entry, repository, self.bool_param("user_metadata", True)))

    def get_object(self, repository: str, ref: str) -> None:
        self._reject_flags("presign")
        entry = self.service.stat_object(repository, ref, self.required_param("path"))
        headers = self._object_headers(entry)
        if self.headers.get("If-None-Match") == f'"{entry.checksum}"':
            self.send_streamed(304, headers, 0, ())
            return
        status, length, first, last = self._byte_range(entry, headers)
        try:
            chunks = self.service.read_object(repository, entry, first, last) if length else iter(())
        except ClientError as exc:
            if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                raise ApiError(410, "No data") from None  # lakeFS's answer when the data is gone
            raise
        try:
            self.send_streamed(status, headers, length, chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def head_object(self, repository: str, ref: str) -> None:
        entry = self.service.stat_object(repository, ref, self.required_param("path"))
        headers = [*self._object_headers(entry), ("Accept-Ranges", "bytes")]
        status, length, _, _ = self._byte_range(entry, headers)
        self.send_streamed(status, headers, length, ())

    def _object_headers(self, entry: Entry) -> list[tuple[str, str]]:
        return [
            ("ETag", f'"{entry.checksum}"'),
            ("Last-Modified", formatdate(entry.mtime, usegmt=True)),
            ("Content-Type", entry.content_type),
            ("Cache-Control", "no-store, must-revalidate"),
            ("Expires", "0"),
            ("X-Content-Type-Options", "nosniff"),
        ]

    def _byte_range(self, entry: Entry, headers: list[tuple[str, str]]) -> tuple[int, int, int | None, int | None]:
        """(status, length, first, last) for the request's Range header; adds Content-Range when ranged."""
        requested = self.headers.get("Range")
        if requested is None:
            return 200, entry.size, None, None
        try:
            first, last = parse_range(requested, entry.size)
        except RangeNotSatisfiable:
            raise ApiError(416, "Requested Range Not Satisfiable") from None
        headers.append(("Content-Range", f"bytes {first}-{last}/{entry.size}"))
        return 206, last - first + 1, first, last

    def upload_object(self, repository: str, branch: str) -> None:
        self._reject_options("storageClass")
        self._reject_flags("force")
        if self.headers.get("If-Match"):
            raise not_implemented("If-Match on upload")
        path = self.required_param("path")
        if not path:
            raise bad_request("path is required")
        self.service.check_upload(repository, branch, path, self.headers.get("If-None-Match"))
        metadata = {
            name.lower()[len(METADATA_HEADER_PREFIX) :]: value
            for name, value in self.headers.items()
            if name.lower().startswith(METADATA_HEADER_PREFIX)
        }
        with self._uploaded_content() as (content, size, content_type):
            entry = self.service.upload_object(repository, branch, path, content, size, content_type, metadata)
        self.send_json(201, object_stats(entry, repository))

    def delete_object(self, repository: str, branch: str) -> None:
        self._reject_flags("force", "no_tombstone")
        self.service.delete_object(repository, branch, self.required_param("path"))
        self.send_empty(204)

    @contextlib.contextmanager
    def _uploaded_content(self) -> Iterator[tuple[BinaryIO, int, str]]:
        """The upload's content, spooled to a temporary file: the multipart part `content`, or the raw body."""
        request_type = self.headers.get("Content-Type", "application/octet-stream")
        reader = ChunkReader(self.request_body_chunks())
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(reader.close)
            if request_type.lower().startswith("multipart/form-data"):
                content, content_type = self._multipart_content(reader, request_type)
                cleanup.callback(content.close)
            else:
                content = cleanup.enter_context(tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY))
                shutil.copyfileobj(reader, content, 1024 * 1024)
                self.body_consumed = True
                content_type = request_type
            size = content.seek(0, io.SEEK_END)
            content.seek(0)
            yield content, size, content_type

    def _multipart_content(self, reader: ChunkReader, request_type: str) -> tuple[BinaryIO, str]:
        environ = {
            "REQUEST_METHOD": "POST",
            "CONTENT_TYPE": request_type,
            "CONTENT_LENGTH": self.headers.get("Content-Length", ""),
            "wsgi.input": reader,
            "wsgi.input_terminated": True,
        }
        _, _, files = parse_form_data(environ, silent=False)
        reader.drain()  # an epilogue after the last part must not be read as the next request
        self.body_consumed = True
        if "content" not in files:
            raise ApiError(500, "multipart upload missing key 'content': http: no such file")
        part = files["content"]
        return part.stream, part.content_type or "application/octet-stream"


def make_server(
    port: int, service: LakeFSService, access_key_id: str, secret_access_key: str, host: str = "127.0.0.1"
) -> FaultAwareServer:
    handler = type(
        "BoundLakeFSHandler",
        (LakeFSHandler,),
        {
            "service": service,
            "credentials": (access_key_id, secret_access_key),
            "gateway": S3Gateway(service, {access_key_id: secret_access_key}),
        },
    )
    return FaultAwareServer((host, port), handler)
