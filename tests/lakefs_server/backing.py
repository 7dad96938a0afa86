"""The S3 store behind the test lakeFS server: object data under the repository's storage namespace.

Like lakeFS, the server writes each upload once, to a fresh physical address (`data/<random>`),
and never rewrites it: branches, commits and tags are metadata that point at those addresses, so
creating a branch or committing copies no data. The bucket is the repository's name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

SINGLE_PUT_LIMIT = 5 * 1024**3  # S3's largest PutObject
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    etag: str  # without quotes: what lakeFS reports as the checksum
    size: int


def new_physical_key() -> str:
    return f"data/{uuid.uuid4().hex}"


class BackingStore:
    def __init__(self, endpoint: str, access_key_id: str, secret_access_key: str, region: str = "us-east-1") -> None:
        session = boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
        )
        self.s3 = session.client(
            "s3",
            endpoint_url=endpoint,
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
                retries={"total_max_attempts": 3, "mode": "standard"},
                max_pool_connections=32,
            ),
        )

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self.s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                return False
            raise
        return True

    def create_bucket(self, bucket: str) -> None:
        self.s3.create_bucket(Bucket=bucket)

    def bucket_is_empty(self, bucket: str) -> bool:
        return not self.s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("Contents")

    def put(
        self, bucket: str, body: BinaryIO, size: int, content_type: str, metadata: Mapping[str, str]
    ) -> StoredObject:
        """Write `body` to a new physical address."""
        key = new_physical_key()
        extra = {"ContentType": content_type, "Metadata": dict(metadata)}
        if size <= SINGLE_PUT_LIMIT:
            etag = self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentLength=size, **extra)["ETag"]
        else:
            self.s3.upload_fileobj(body, bucket, key, ExtraArgs=extra)
            etag = self.s3.head_object(Bucket=bucket, Key=key)["ETag"]
        return StoredObject(key, etag.strip('"'), size)

    def read(self, bucket: str, key: str, first: int | None = None, last: int | None = None) -> Iterator[bytes]:
        """The object's bytes (or bytes first..last inclusive), streamed in 1 MiB pieces.

        The request is made before this returns, so a failure surfaces before any answer is sent.
        """
        extra = {} if first is None else {"Range": f"bytes={first}-{last}"}
        return _stream(self.s3.get_object(Bucket=bucket, Key=key, **extra)["Body"])

    # -- multipart uploads (the S3 gateway passes them through to a new physical address) ------------------

    def start_multipart(self, bucket: str, key: str, content_type: str, metadata: Mapping[str, str]) -> str:
        answer = self.s3.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType=content_type, Metadata=dict(metadata)
        )
        return answer["UploadId"]

    def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: BinaryIO, size: int) -> str:
        answer = self.s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body, ContentLength=size
        )
        return answer["ETag"]

    def complete_multipart(self, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]) -> StoredObject:
        self.s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]},
        )
        answer = self.s3.head_object(Bucket=bucket, Key=key)
        return StoredObject(key, answer["ETag"].strip('"'), answer["ContentLength"])

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        self.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def _stream(body) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()
