"""AWS Signature Version 4 verification, as lakeFS's S3 gateway does it (pkg/gateway/sig/v4.go).

Both forms are accepted: the Authorization header and a presigned URL's query string. The
canonical request is rebuilt from the request as received (path re-encoded like lakeFS's
EncodePath, query parameters sorted, signed headers trimmed) and signed with the secret of the
access key the request names.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOADS = ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
MAX_CLOCK_SKEW = timedelta(minutes=15)  # sig.AmzMaxClockSkew
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
AUTH_HEADER = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>.{3,20})/(?P<date>\d{8})/(?P<region>[\w\-]+)/(?P<service>[\w\-]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<headers>[\w\-;.#!$%&'*+^`|~]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)
WHITESPACE = re.compile(r"\s+")
CREDENTIAL_SCOPE = re.compile(r"(?P<key>.{3,20})/(?P<date>\d{8})/(?P<region>[\w\-]+)/(?P<service>[\w\-]+)/aws4_request")


class SignatureError(Exception):
    """A request the gateway refuses: `code` is the S3 error code it answers with."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Signature:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: str
    signature: str
    presigned: bool
    expires: int = 0


def is_aws_signed(headers: Mapping[str, str], query: Mapping[str, list[str]]) -> bool:
    """sig.IsAWSSignedRequest: lakeFS serves such requests from its S3 gateway, others from its API."""
    authorization = headers.get("Authorization", "")
    return bool(
        headers.get("X-Amz-Signature")
        or authorization.startswith(("AWS4", "AWS "))
        or query.get("AWSAccessKeyId")
        or query.get("X-Amz-Credential")
    )


def parse(headers: Mapping[str, str], query: Mapping[str, list[str]]) -> Signature:
    authorization = headers.get("Authorization", "")
    if authorization.startswith("AWS ") or "AWSAccessKeyId" in query:
        raise SignatureError("NotImplemented")  # lakeFS also takes Signature V2; this server does not
    if authorization:
        found = AUTH_HEADER.search(authorization)
        if not found or not authorization.startswith(ALGORITHM):
            raise SignatureError("AccessDenied")  # lakeFS: a header it cannot parse is a refusal
        return Signature(
            found["key"], found["date"], found["region"], found["service"], found["headers"], found["signature"], False
        )
    first = {name: values[0] for name, values in query.items() if values}
    if first.get("X-Amz-Algorithm") != ALGORITHM:
        raise SignatureError("AccessDenied")  # no scheme lakeFS knows
    required = ("X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Expires")
    if any(name not in first for name in required):
        raise SignatureError("MissingFields")
    scope = CREDENTIAL_SCOPE.fullmatch(first["X-Amz-Credential"])
    if not scope:
        raise SignatureError("AuthorizationQueryParametersError")
    expires = int(first["X-Amz-Expires"]) if first["X-Amz-Expires"].isdigit() else -1
    if not 0 <= expires <= MAX_PRESIGN_EXPIRES:
        raise SignatureError("AuthorizationQueryParametersError")
    return Signature(
        scope["key"],
        scope["date"],
        scope["region"],
        scope["service"],
        first["X-Amz-SignedHeaders"],
        first["X-Amz-Signature"],
        True,
        expires,
    )


def verify(
    signature: Signature,
    secret: str,
    method: str,
    path: str,
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
    now: datetime | None = None,
) -> None:
    """Raise SignatureError unless `signature` signs this request with `secret` and is still valid."""
    amz_date = _request_date(signature, query, headers)
    canonical = "\n".join(
        [
            method,
            quote(path, safe="/-_.~"),
            _canonical_query(query),
            _canonical_headers(signature.signed_headers, headers),
            signature.signed_headers,
            payload_hash(headers),
        ]
    )
    scope = f"{signature.date}/{signature.region}/{signature.service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _signing_key(secret, signature.date, signature.region, signature.service)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.signature):
        raise SignatureError("SignatureDoesNotMatch")
    requested = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    if abs(now - requested) > MAX_CLOCK_SKEW:
        raise SignatureError("RequestTimeTooSkewed")
    if signature.presigned and now > requested + timedelta(seconds=signature.expires):
        raise SignatureError("AccessDenied")  # ErrExpiredPresignRequest answers "Request has expired" (403)


def payload_hash(headers: Mapping[str, str]) -> str:
    return headers.get("x-amz-content-sha256") or UNSIGNED_PAYLOAD


def _request_date(signature: Signature, query: Mapping[str, list[str]], headers: Mapping[str, str]) -> str:
    amz_date = (query.get("X-Amz-Date") or [""])[0] or headers.get("x-amz-date") or headers.get("date") or ""
    if not re.fullmatch(r"\d{8}T\d{6}Z", amz_date):
        raise SignatureError("AccessDenied")  # missing or malformed date
    if amz_date[:8] != signature.date:
        raise SignatureError("AccessDenied")  # the scope's date must be the request's
    return amz_date


def _canonical_query(query: Mapping[str, list[str]]) -> str:
    pairs = sorted((name, values[0] if values else "") for name, values in query.items() if name != "X-Amz-Signature")
    return "&".join(f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}" for name, value in pairs)


def _canonical_headers(signed: str, headers: Mapping[str, str]) -> str:
    lines = []
    for name in sorted(signed.split(";")):
        value = WHITESPACE.sub(" ", (headers.get(name) or "").strip())
        lines.append(f"{name}:{value}\n")
    return "".join(lines)


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key
