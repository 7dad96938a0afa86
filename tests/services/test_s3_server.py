"""The S3 test server (moto behind the fault proxy), driven by boto3 as the project drives it."""

from __future__ import annotations

import hashlib
import io
import os
import uuid

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError, ConnectionClosedError, IncompleteReadError, ResponseStreamingError

from tests.fixtures.faults import FaultSwitch

MiB = 1024 * 1024


@pytest.fixture
def bucket(s3_server) -> str:
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_server.client(direct=True).create_bucket(Bucket=name)
    return name


@pytest.fixture
def stored(s3_server, bucket) -> tuple[str, bytes]:
    """A 3 MiB object, put directly into moto."""
    data = os.urandom(3 * MiB)
    s3_server.client(direct=True).put_object(Bucket=bucket, Key="blob", Body=data)
    return "blob", data


def test_put_and_get_round_trip_through_the_proxy(s3_server, bucket):
    s3 = s3_server.client()
    data = os.urandom(256 * 1024)
    put = s3.put_object(Bucket=bucket, Key="dir/obj.bin", Body=data, ContentType="application/x-test")
    got = s3.get_object(Bucket=bucket, Key="dir/obj.bin")
    assert got["Body"].read() == data
    assert got["ContentType"] == "application/x-test"
    assert put["ETag"] == got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    # the direct endpoint sees the same object: the proxy forwards, it does not store
    assert s3_server.client(direct=True).head_object(Bucket=bucket, Key="dir/obj.bin")["ContentLength"] == len(data)


def test_multipart_upload_and_parallel_ranged_download(s3_server, bucket):
    s3 = s3_server.client()
    data = os.urandom(12 * MiB)
    parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
    s3.upload_fileobj(io.BytesIO(data), bucket, "big.bin", Config=parts)

    assert s3.head_object(Bucket=bucket, Key="big.bin")["ETag"].strip('"').endswith("-3")
    downloaded = io.BytesIO()
    s3.download_fileobj(bucket, "big.bin", downloaded, Config=parts)
    assert downloaded.getvalue() == data


def test_range_header_passes_through(s3_server, stored, bucket):
    key, data = stored
    answer = s3_server.client().get_object(Bucket=bucket, Key=key, Range="bytes=100-199")
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert answer["ContentRange"] == f"bytes 100-199/{len(data)}"
    assert answer["Body"].read() == data[100:200]


def test_status_fault_reaches_boto3_once(s3_server, stored, bucket):
    key, data = stored
    s3 = s3_server.client(max_attempts=1)
    s3_server.faults.fail_next(1, status=503)
    with pytest.raises(ClientError) as failure:
        s3.get_object(Bucket=bucket, Key=key)
    assert failure.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert failure.value.response["Error"]["Code"] == "SlowDown"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data  # only the next request failed


def test_transient_faults_are_cured_by_botocore_retries(s3_server, stored, bucket):
    key, data = stored
    s3_server.faults.fail_next(2, status=503)
    answer = s3_server.client(max_attempts=3).get_object(Bucket=bucket, Key=key)
    assert answer["Body"].read() == data
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    assert [fault["status"] for fault in s3_server.faults.triggered()] == [503, 503]


def test_forbidden_fault_carries_an_s3_error_code(s3_server, stored, bucket):
    key, _ = stored
    s3_server.faults.fail_next(1, status=403)
    with pytest.raises(ClientError) as failure:
        s3_server.client(max_attempts=1).get_object(Bucket=bucket, Key=key)
    assert failure.value.response["Error"]["Code"] == "AccessDenied"


def test_reset_fault_closes_the_connection_without_an_answer(s3_server, stored, bucket):
    key, _ = stored
    s3_server.faults.reset_next(1)
    with pytest.raises(ConnectionClosedError):
        s3_server.client(max_attempts=1).get_object(Bucket=bucket, Key=key)
    assert s3_server.faults.triggered() == [{"mode": "reset", "request": f"GET /{bucket}/{key}"}]


def test_truncate_fault_cuts_the_body_short_of_its_content_length(s3_server, stored, bucket):
    key, data = stored
    s3_server.faults.truncate_next(1)
    answer = s3_server.client(max_attempts=1).get_object(Bucket=bucket, Key=key)
    assert answer["ContentLength"] == len(data)  # the full length is announced...
    with pytest.raises((IncompleteReadError, ResponseStreamingError)):
        answer["Body"].read()  # ...and the reader notices that half of it never came


def test_truncate_fault_applies_to_ranged_gets(s3_server, stored, bucket):
    key, _ = stored
    s3_server.faults.truncate_next(1, match=r"^GET ")
    answer = s3_server.client(max_attempts=1).get_object(Bucket=bucket, Key=key, Range="bytes=0-999")
    with pytest.raises((IncompleteReadError, ResponseStreamingError)):
        answer["Body"].read()


def test_faults_apply_only_to_matching_requests(s3_server, bucket):
    s3 = s3_server.client(max_attempts=1)
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    s3_server.faults.fail_next(1, status=500, match=rf"^GET /{bucket}/b$")
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"a"
    s3.head_object(Bucket=bucket, Key="b")  # HEAD does not match the rule
    with pytest.raises(ClientError) as failure:
        s3.get_object(Bucket=bucket, Key="b")
    assert failure.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_clear_disarms_every_rule(s3_server, stored, bucket):
    key, data = stored
    s3_server.faults.fail_next(5, status=503)
    s3_server.faults.reset_next(5)
    assert len(s3_server.faults.state()["rules"]) == 2
    s3_server.faults.clear()
    assert s3_server.faults.state() == {"rules": [], "triggered": []}
    assert s3_server.client(max_attempts=1).get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_a_malformed_rule_is_refused_with_a_reason(s3_server):
    with pytest.raises(RuntimeError, match="count must be a positive integer"):
        s3_server.faults.fail_next(0)
    with pytest.raises(RuntimeError, match="match is not a valid regular expression"):
        s3_server.faults.reset_next(1, match="(")
    assert s3_server.faults.state()["rules"] == []


def test_fault_switch_names_an_unreachable_server():
    switch = FaultSwitch("http://127.0.0.1:9", timeout=1)
    with pytest.raises(ConnectionError, match=r"http://127\.0\.0\.1:9/_test/faults is unreachable"):
        switch.clear()
