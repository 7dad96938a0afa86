"""The S3 store behind the test lakeFS server, laid out as lakeFS's S3 gateway shows it.

Bucket = repository, key = `{ref}/{path}` for every branch, tag and commit id, so that a boto3
client reading through the gateway endpoint sees the same bytes as the REST API does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

SINGLE_PUT_LIMIT = 5 * 1024**3  # S3's largest PutObject / CopyObject
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    etag: str  # without quotes: what lakeFS reports as the checksum
    size: int
    mtime: int


@dataclass(frozen=True)
class ObjectDetails:
    content_type: str
    metadata: Mapping[str, str]


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
        # (key, etag) -> details: HEAD once per object version, not once per listing
        self._details: dict[tuple[str, str], ObjectDetails] = {}

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

    def list(self, bucket: str, prefix: str) -> list[StoredObject]:
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found.append(
                    StoredObject(
                        key=item["Key"],
                        etag=item["ETag"].strip('"'),
                        size=item["Size"],
                        mtime=int(item["LastModified"].timestamp()),
                    )
                )
        return found

    def head(self, bucket: str, key: str) -> tuple[StoredObject, ObjectDetails] | None:
        try:
            answer = self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                return None
            raise
        stored = StoredObject(
            key, answer["ETag"].strip('"'), answer["ContentLength"], int(answer["LastModified"].timestamp())
        )
        details = ObjectDetails(answer.get("ContentType") or "application/octet-stream", answer.get("Metadata", {}))
        self._details[(key, stored.etag)] = details
        return stored, details

    def details(self, bucket: str, stored: StoredObject) -> ObjectDetails:
        cached = self._details.get((stored.key, stored.etag))
        if cached is not None:
            return cached
        found = self.head(bucket, stored.key)
        if found is None:  # deleted since it was listed: report what the listing knew
            return ObjectDetails("application/octet-stream", {})
        return found[1]

    def put(
        self, bucket: str, key: str, body: BinaryIO, size: int, content_type: str, metadata: Mapping[str, str]
    ) -> StoredObject:
        extra = {"ContentType": content_type, "Metadata": dict(metadata)}
        if size <= SINGLE_PUT_LIMIT:
            answer = self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentLength=size, **extra)
            etag = answer["ETag"].strip('"')
        else:
            self.s3.upload_fileobj(body, bucket, key, ExtraArgs=extra)
            etag = self.s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        self._details[(key, etag)] = ObjectDetails(content_type, dict(metadata))
        stored = self.head(bucket, key)
        assert stored is not None, f"{bucket}/{key} vanished right after it was written"
        return stored[0]

    def delete(self, bucket: str, key: str) -> None:
        self.s3.delete_object(Bucket=bucket, Key=key)

    def copy(self, bucket: str, source_key: str, target_key: str, etag: str, size: int) -> None:
        """Server-side copy that keeps the ETag, so every ref's copy reports the same checksum.

        A plain CopyObject gives a multipart object a new single-part ETag; copying it part by
        part with the original part size reproduces the original `md5-of-md5s-N` ETag.
        """
        if "-" not in etag and size <= SINGLE_PUT_LIMIT:
            self.s3.copy_object(Bucket=bucket, Key=target_key, CopySource={"Bucket": bucket, "Key": source_key})
            return
        part_size = self.s3.head_object(Bucket=bucket, Key=source_key, PartNumber=1)["ContentLength"]
        source = self.s3.head_object(Bucket=bucket, Key=source_key)
        upload = self.s3.create_multipart_upload(
            Bucket=bucket,
            Key=target_key,
            ContentType=source.get("ContentType", ""),
            Metadata=source.get("Metadata", {}),
        )
        parts = []
        for number, start in enumerate(range(0, size, part_size), start=1):
            end = min(start + part_size, size) - 1
            answer = self.s3.upload_part_copy(
                Bucket=bucket,
                Key=target_key,
                UploadId=upload["UploadId"],
                PartNumber=number,
                CopySource={"Bucket": bucket, "Key": source_key},
                CopySourceRange=f"bytes={start}-{end}",
            )
            parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        self.s3.complete_multipart_upload(
            Bucket=bucket, Key=target_key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )

    def read(self, bucket: str, key: str, first: int | None = None, last: int | None = None) -> Iterator[bytes]:
        """The object's bytes (or bytes first..last inclusive), streamed in 1 MiB pieces.

        The request is made before this returns, so a failure surfaces before any answer is sent.
        """
        extra = {} if first is None else {"Range": f"bytes={first}-{last}"}
        return _stream(self.s3.get_object(Bucket=bucket, Key=key, **extra)["Body"])


def _stream(body) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()
