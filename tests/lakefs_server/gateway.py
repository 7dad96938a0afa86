"""The S3 gateway of the test lakeFS server: bucket = repository, key = `{ref}/{path}`.

As in lakeFS (cmd/lakefs/cmd/run.go), the gateway shares the server's port and takes every
request that carries an AWS signature. It verifies Signature V4 against the lakeFS credentials
before anything else and answers refusals with S3's XML error body, as lakeFS's gateway does
(pkg/gateway/middleware.go, pkg/gateway/errors/errors.go): a wrong secret is 403
SignatureDoesNotMatch; an access key lakeFS does not know is 403 AccessDenied (lakeFS looks the
key up and answers AccessDenied when it is missing, where AWS S3 would say InvalidAccessKeyId).

Reads resolve the ref like the API does (branches, tags, full or short commit ids, `~N`, `^N`,
`@`). Writes go to branches only: a PUT or a multipart upload addressed to anything else is
404 NoSuchBucket (lakeFS checks BranchExists first); a DELETE there changes nothing (204).
Implemented: ListBuckets, HeadBucket, ListObjects (v1 and v2), GetObject, HeadObject, PutObject,
DeleteObject and multipart uploads. Anything else answers 501 NotImplemented.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import secrets
import tempfile
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from tests.lakefs_server import sigv4
from tests.lakefs_server.backing import StoredObject, new_physical_key
from tests.lakefs_server.model import ApiError, Entry, Repository
from tests.lakefs_server.service import LakeFSService, group_by_delimiter
from tests.lakefs_server.wire import RangeNotSatisfiable, parse_range

if TYPE_CHECKING:
    from tests.fixtures.faults import FaultInjectingHandler

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_KEYS = 1000  # ListObjectMaxKeys
SPOOL_IN_MEMORY = 8 * 1024 * 1024
META_PREFIX = "x-amz-meta-"
ERRORS = {
    "AccessDenied": (403, "Access Denied."),
    "SignatureDoesNotMatch": (
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    ),
    "RequestTimeTooSkewed": (403, "The difference between the request time and the server's time is too large."),
    "MissingFields": (400, "Missing fields in request."),
    "AuthorizationQueryParametersError": (400, "Error parsing the X-Amz-Credential parameter."),
    "XAmzContentSHA256Mismatch": (400, "The provided 'x-amz-content-sha256' header does not match what was computed."),
    "InvalidArgument": (400, "Invalid argument."),
    "MalformedXML": (400, "The XML you provided was not well-formed or did not validate against our published schema."),
    "InvalidPart": (400, "One or more of the specified parts could not be found."),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchUpload": (404, "The specified multipart upload does not exist."),
    "PreconditionFailed": (412, "At least one of the pre-conditions you specified did not hold"),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InternalError": (500, "We encountered an internal error, please try again."),
    "NotImplemented": (501, "A header you provided implies functionality that is not implemented"),
}


class S3Error(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.status, message = ERRORS[code]
        self.message = f"{message} ({detail})" if detail else message


def not_implemented(what: str) -> S3Error:
    return S3Error("NotImplemented", f"not implemented by the test lakeFS server: {what}")


def error_body(code: str, message: str, region: str) -> bytes:
    request_id = secrets.token_hex(8)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message><Resource></Resource>"
        f"<Region>{region}</Region><RequestId>{request_id}</RequestId><HostId>{secrets.token_hex(4)}</HostId></Error>"
    ).encode()


@dataclass(frozen=True)
class MultipartUpload:
    repository: str
    branch: str
    path: str
    key: str  # the physical address the parts are assembled at
    content_type: str
    metadata: Mapping[str, str]


@dataclass
class GatewayRequest:
    handler: FaultInjectingHandler
    method: str
    path: str  # decoded, e.g. /repo/main/a b.txt
    query: dict[str, list[str]]
    repository: str = ""
    ref: str = ""
    key: str = ""
    body_started: bool = False
    body_consumed: bool = False

    def param(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str = "") -> str:
        return self.handler.headers.get(name, default)


class S3Gateway:
    def __init__(self, service: LakeFSService, credentials: Mapping[str, str], region: str = "us-east-1") -> None:
        self.service = service
        self.credentials = dict(credentials)  # access key id -> secret
        self.region = region
        self._uploads: dict[str, MultipartUpload] = {}
        self._uploads_lock = threading.Lock()

    def handle(self, handler: FaultInjectingHandler) -> None:
        split = urlsplit(handler.path)
        request = GatewayRequest(handler, handler.command, unquote(split.path), parse_qs(split.query, True))
        request.repository, _, rest = request.path.lstrip("/").partition("/")
        request.ref, _, request.key = rest.partition("/")
        try:
            self._authenticate(request)
            self._serve(request)
        except S3Error as exc:
            self._send_error(request, exc)

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _authenticate(self, request: GatewayRequest) -> None:
        headers = {name.lower(): value for name, value in request.handler.headers.items()}
        headers["Authorization"] = request.handler.headers.get("Authorization", "")
        try:
            signature = sigv4.parse(headers, request.query)
            secret = self.credentials.get(signature.access_key_id)
            if secret is None:
                raise sigv4.SignatureError("AccessDenied")  # lakeFS: the key is not found -> ErrAccessDenied
            sigv4.verify(signature, secret, request.method, request.path, request.query, headers)
        except sigv4.SignatureError as exc:
            raise S3Error(exc.code) from None

    def _send_error(self, request: GatewayRequest, error: S3Error) -> None:
        handler = request.handler
        if handler.response_started:  # failed in the middle of a body: all that is left is to cut it
            handler.close_connection = True
            return
        if request.body_started and not request.body_consumed:
            handler.close_connection = True  # the body broke off: the connection cannot be reused
        elif not request.body_consumed:
            request.body_started = True
            handler.drain_request_body()  # the client is still sending it and must read our answer
        handler.send_bytes(error.status, error_body(error.code, error.message, self.region), "application/xml")

    def _repository(self, request: GatewayRequest) -> Repository:
        repo = self.service.find_repository(request.repository)
        if repo is None:
            raise S3Error("NoSuchBucket")
        return repo

    def _serve(self, request: GatewayRequest) -> None:
        if not request.repository:
            if request.method != "GET":
                raise not_implemented(f"{request.method} /")
            self._list_buckets(request)
            return
        repo = self._repository(request)
        if not request.ref and not request.key:
            self._serve_repository(request, repo)
        elif not request.key:
            raise S3Error("NoSuchKey")  # lakeFS: a ref without a path is no operation it knows
        else:
            self._serve_object(request, repo)

    def _serve_repository(self, request: GatewayRequest, repo: Repository) -> None:
        unsupported = {"uploads", "location", "versioning", "versions", "acl", "policy", "delete", "tagging"}
        if request.method == "HEAD" and not request.query:
            request.handler.send_streamed(200, [], 0, ())
        elif request.method == "GET" and not unsupported & set(request.query):
            self._list_objects(request, repo)
        else:
            raise not_implemented(f"{request.method} on a bucket with {sorted(request.query)}")

    def _serve_object(self, request: GatewayRequest, repo: Repository) -> None:
        method, query = request.method, request.query
        if set(query) & {"tagging", "acl", "torrent", "retention", "legal-hold", "attributes", "select", "restore"}:
            raise not_implemented(f"{method} with {sorted(query)}")
        if method == "PUT" and request.header("x-amz-copy-source"):
            raise not_implemented("CopyObject and UploadPartCopy")
        operations = {
            ("GET", False): self._get_object,
            ("HEAD", False): self._get_object,
            ("PUT", True): self._upload_part,
            ("PUT", False): self._put_object,
            ("POST", True): self._complete_multipart,
            ("DELETE", True): self._abort_multipart,
            ("DELETE", False): self._delete_object,
        }
        if method == "POST" and "uploads" in query:
            self._create_multipart(request, repo)
        elif (method, "uploadId" in query) in operations:
            operations[method, "uploadId" in query](request, repo)
        else:
            raise not_implemented(f"{method} on an object with {sorted(query)}")

    def _send_xml(self, request: GatewayRequest, body: str, headers: list[tuple[str, str]] = ()) -> None:
        payload = ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()
        request.handler.send_bytes(200, payload, "application/xml", headers)

    def _branch(self, request: GatewayRequest, repo: Repository) -> str:
        """The branch a write goes to; lakeFS answers NoSuchBucket for anything that is not one."""
        with repo.lock:
            if request.ref not in repo.branches:
                raise S3Error("NoSuchBucket", f"writes go to branches only; {request.ref!r} is not a branch")
        return request.ref

    # -- reads -------------------------------------------------------------------------------------------------

    def _list_buckets(self, request: GatewayRequest) -> None:
        names = [item["id"] for item in self.service.list_repositories("", "", 1000)["results"]]
        buckets = "".join(
            f"<Bucket><Name>{escape(name)}</Name><CreationDate>{_iso(0)}</CreationDate></Bucket>" for name in names
        )
        owner = "<Owner><ID>lakefs</ID><DisplayName>lakefs</DisplayName></Owner>"
        body = f"{owner}<Buckets>{buckets}</Buckets>"
        self._send_xml(request, f'<ListAllMyBucketsResult xmlns="{S3_NAMESPACE}">{body}</ListAllMyBucketsResult>')

    def _resolved_tree(self, repo: Repository, ref: str) -> dict[str, Entry]:
        try:
            return self.service.tree(repo, ref)
        except ApiError as exc:
            raise S3Error("NoSuchKey" if exc.status == 404 else "InvalidArgument", exc.message) from None

    def _list_objects(self, request: GatewayRequest, repo: Repository) -> None:
        version2 = request.param("list-type") == "2"
        prefix, delimiter = request.param("prefix"), request.param("delimiter")
        if version2:
            after = request.param("continuation-token") or request.param("start-after")
        else:
            after = request.param("marker")
        max_keys = min(int(request.param("max-keys") or MAX_KEYS), MAX_KEYS)
        ref, slash, path_prefix = prefix.partition("/")
        if slash:  # objects under a ref
            tree = self._resolved_tree(repo, ref)
            paths = sorted(p for p in tree if p.startswith(path_prefix))
            listed = [(f"{ref}/{p}", is_prefix) for p, is_prefix in group_by_delimiter(paths, path_prefix, delimiter)]
            entries = {f"{ref}/{p}": tree[p] for p in paths}
        else:  # lakeFS lists the branches as the bucket's top level
            with repo.lock:
                listed = [(f"{name}/", True) for name in sorted(repo.branches) if name.startswith(ref)]
            entries = {}
        listed = [(key, is_prefix) for key, is_prefix in listed if key > after]
        page, truncated = listed[:max_keys], len(listed) > max_keys
        contents, prefixes = [], []
        for key, is_prefix in page:
            if is_prefix:
                prefixes.append(f"<CommonPrefixes><Prefix>{escape(key)}</Prefix></CommonPrefixes>")
            else:
                entry = entries[key]
                contents.append(
                    f"<Contents><Key>{escape(key)}</Key><LastModified>{_iso(entry.mtime)}</LastModified>"
                    f'<ETag>"{entry.checksum}"</ETag><Size>{entry.size}</Size><StorageClass>STANDARD</StorageClass></Contents>'
                )
        fields = [
            f"<Name>{escape(repo.name)}</Name><Prefix>{escape(prefix)}</Prefix><MaxKeys>{max_keys}</MaxKeys>",
            f"<Delimiter>{escape(delimiter)}</Delimiter>" if delimiter else "",
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
        ]
        last = escape(page[-1][0]) if page else ""
        if version2:
            fields.append(f"<KeyCount>{len(page)}</KeyCount>")
            if request.param("continuation-token"):
                fields.append(f"<ContinuationToken>{escape(request.param('continuation-token'))}</ContinuationToken>")
            if truncated:
                fields.append(f"<NextContinuationToken>{last}</NextContinuationToken>")
        else:
            fields.append(f"<Marker>{escape(request.param('marker'))}</Marker>")
            if truncated:
                fields.append(f"<NextMarker>{last}</NextMarker>")
        body = "".join(fields) + "".join(contents) + "".join(prefixes)
        self._send_xml(request, f'<ListBucketResult xmlns="{S3_NAMESPACE}">{body}</ListBucketResult>')

    def _get_object(self, request: GatewayRequest, repo: Repository) -> None:
        entry = self._resolved_tree(repo, request.ref).get(request.key)
        if entry is None:
            raise S3Error("NoSuchKey")
        etag = f'"{entry.checksum}"'
        headers = [
            ("ETag", etag),
            ("Last-Modified", formatdate(entry.mtime, usegmt=True)),
            ("Content-Type", entry.content_type),
            ("Accept-Ranges", "bytes"),
            *((META_PREFIX + name, value) for name, value in entry.metadata.items()),
        ]
        if_match, if_none_match = request.header("If-Match"), request.header("If-None-Match")
        if if_match and if_match not in (etag, entry.checksum, "*"):
            raise S3Error("PreconditionFailed")
        if if_none_match and if_none_match in (etag, entry.checksum, "*"):
            request.handler.send_streamed(304, headers, 0, ())
            return
        status, first, last, length = 200, None, None, entry.size
        if request.header("Range"):
            try:
                first, last = parse_range(request.header("Range"), entry.size)
            except RangeNotSatisfiable:
                raise S3Error("InvalidRange") from None
            status, length = 206, last - first + 1
            headers.append(("Content-Range", f"bytes {first}-{last}/{entry.size}"))
        if request.method == "HEAD" or length == 0:
            request.handler.send_streamed(status, headers, length, ())
            return
        chunks = self.service.read_object(repo.name, entry, first, last)
        try:
            request.handler.send_streamed(status, headers, length, chunks)
        finally:
            chunks.close()

    # -- writes ------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _body(self, request: GatewayRequest) -> Iterator[tuple[BinaryIO, int]]:
        """The request body spooled to a temporary file, checked against x-amz-content-sha256."""
        declared = sigv4.payload_hash({k.lower(): v for k, v in request.handler.headers.items()})
        if declared.upper() in sigv4.STREAMING_PAYLOADS:
            raise not_implemented(f"aws-chunked payloads ({declared})")
        digest = hashlib.sha256()
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            request.body_started = True
            for chunk in request.handler.request_body_chunks():
                digest.update(chunk)
                spool.write(chunk)
            request.body_consumed = True
            if declared != sigv4.UNSIGNED_PAYLOAD and digest.hexdigest() != declared.lower():
                raise S3Error("XAmzContentSHA256Mismatch")
            size = spool.tell()
            spool.seek(0)
            yield spool, size

    def _put_object(self, request: GatewayRequest, repo: Repository) -> None:
        branch = self._branch(request, repo)
        content_type = request.header("Content-Type", "application/octet-stream")
        metadata = _user_metadata(request)
        with self._body(request) as (body, size):
            stored = self.service.store.put(repo.name, body, size, content_type, metadata)
        self._stage(repo, branch, request.key, stored, content_type, metadata)
        request.handler.send_streamed(200, [("ETag", f'"{stored.etag}"')], 0, ())

    def _stage(self, repo, branch, path, stored: StoredObject, content_type, metadata) -> None:
        try:
            self.service.stage(repo, branch, path, stored, content_type, metadata)
        except ApiError:
            raise S3Error("NoSuchBucket", f"branch {branch!r} was deleted during the upload") from None

    def _delete_object(self, request: GatewayRequest, repo: Repository) -> None:
        with contextlib.suppress(ApiError):  # lakeFS: deleting through a non-branch ref changes nothing
            self.service.delete_object(repo.name, request.ref, request.key)
        request.handler.send_streamed(204, [], 0, ())

    def _create_multipart(self, request: GatewayRequest, repo: Repository) -> None:
        branch = self._branch(request, repo)
        content_type = request.header("Content-Type", "application/octet-stream")
        metadata = _user_metadata(request)
        key = new_physical_key()
        upload_id = self.service.store.start_multipart(repo.name, key, content_type, metadata)
        with self._uploads_lock:
            self._uploads[upload_id] = MultipartUpload(repo.name, branch, request.key, key, content_type, metadata)
        self._send_xml(
            request,
            f'<InitiateMultipartUploadResult xmlns="{S3_NAMESPACE}"><Bucket>{escape(repo.name)}</Bucket>'
            f"<Key>{escape(request.ref + '/' + request.key)}</Key><UploadId>{escape(upload_id)}</UploadId>"
            "</InitiateMultipartUploadResult>",
        )

    def _upload(self, request: GatewayRequest, repo: Repository) -> tuple[str, MultipartUpload]:
        upload_id = request.param("uploadId")
        with self._uploads_lock:
            upload = self._uploads.get(upload_id)
        if upload is None or (upload.repository, upload.branch, upload.path) != (repo.name, request.ref, request.key):
            raise S3Error("NoSuchUpload")
        return upload_id, upload

    def _upload_part(self, request: GatewayRequest, repo: Repository) -> None:
        upload_id, upload = self._upload(request, repo)
        number = request.param("partNumber")
        if not number.isdigit() or not 1 <= int(number) <= 10000:
            raise S3Error("InvalidArgument", "partNumber must be an integer between 1 and 10000")
        with self._body(request) as (body, size):
            etag = self.service.store.upload_part(repo.name, upload.key, upload_id, int(number), body, size)
        request.handler.send_streamed(200, [("ETag", etag)], 0, ())

    def _complete_multipart(self, request: GatewayRequest, repo: Repository) -> None:
        upload_id, upload = self._upload(request, repo)
        with self._body(request) as (body, _):
            parts = _completed_parts(body.read())
        stored = self.service.store.complete_multipart(repo.name, upload.key, upload_id, parts)
        with self._uploads_lock:
            self._uploads.pop(upload_id, None)
        self._stage(repo, upload.branch, upload.path, stored, upload.content_type, upload.metadata)
        key = escape(request.ref + "/" + request.key)
        self._send_xml(
            request,
            f'<CompleteMultipartUploadResult xmlns="{S3_NAMESPACE}"><Location>/{escape(repo.name)}/{key}</Location>'
            f'<Bucket>{escape(repo.name)}</Bucket><Key>{key}</Key><ETag>"{stored.etag}"</ETag>'
            "</CompleteMultipartUploadResult>",
        )

    def _abort_multipart(self, request: GatewayRequest, repo: Repository) -> None:
        upload_id, upload = self._upload(request, repo)
        self.service.store.abort_multipart(repo.name, upload.key, upload_id)
        with self._uploads_lock:
            self._uploads.pop(upload_id, None)
        request.handler.send_streamed(204, [], 0, ())


def _user_metadata(request: GatewayRequest) -> dict[str, str]:
    return {
        name.lower()[len(META_PREFIX) :]: value
        for name, value in request.handler.headers.items()
        if name.lower().startswith(META_PREFIX)
    }


def _completed_parts(document: bytes) -> list[tuple[int, str]]:
    try:
        root = ElementTree.parse(io.BytesIO(document)).getroot()
    except ElementTree.ParseError:
        raise S3Error("MalformedXML") from None
    parts = []
    for part in root.iter():
        if part.tag.rsplit("}", 1)[-1] != "Part":
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in part}
        if not fields.get("PartNumber", "").isdigit() or "ETag" not in fields:
            raise S3Error("MalformedXML")
        parts.append((int(fields["PartNumber"]), fields["ETag"]))
    if not parts:
        raise S3Error("MalformedXML")
    return parts


def _iso(timestamp: int) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
