"""The test lakeFS server, driven by the real lakefs-sdk client (and boto3 through the S3 gateway role)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import lakefs
import lakefs_sdk
import pytest
import urllib3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from lakefs_sdk.exceptions import ApiException
from lakefs_spec import LakeFSFileSystem

from edge_deploy.config import Settings

COMMIT_ID = re.compile(r"^[0-9a-f]{64}$")
MiB = 1024 * 1024


@pytest.fixture
def client(lakefs_server):
    with lakefs_server.api() as api_client:
        yield api_client


@pytest.fixture
def lake(client, lakefs_repo, tmp_path):
    return Lake(client, lakefs_repo, tmp_path)


class Lake:
    """Short calls for the SDK operations these tests repeat, on one repository."""

    def __init__(self, client: lakefs_sdk.ApiClient, repo: str, tmp_path: Path) -> None:
        self.repo = repo
        self.tmp_path = tmp_path
        self.objects = lakefs_sdk.ObjectsApi(client)
        self.commits = lakefs_sdk.CommitsApi(client)
        self.branches = lakefs_sdk.BranchesApi(client)
        self.tags = lakefs_sdk.TagsApi(client)
        self.refs = lakefs_sdk.RefsApi(client)
        self.repos = lakefs_sdk.RepositoriesApi(client)

    def upload(self, path: str, data: bytes, branch: str = "main") -> lakefs_sdk.ObjectStats:
        source = self.tmp_path / uuid.uuid4().hex  # the SDK uploads a file given by name
        source.write_bytes(data)
        return self.objects.upload_object(self.repo, branch, path, content=str(source))

    def read(self, ref: str, path: str, byte_range: str | None = None) -> bytes:
        return bytes(self.objects.get_object(self.repo, ref, path, range=byte_range))

    def commit(self, message: str = "change", branch: str = "main", **options) -> lakefs_sdk.Commit:
        return self.commits.commit(self.repo, branch, lakefs_sdk.CommitCreation(message=message, **options))

    def paths(self, ref: str, **options) -> list[str]:
        return [item.path for item in self.objects.list_objects(self.repo, ref, **options).results]


def error_of(failure: pytest.ExceptionInfo[ApiException]) -> tuple[int, str]:
    """(status, message) of an error answer, which must be lakeFS's {"message": ...} body."""
    return failure.value.status, json.loads(failure.value.body)["message"]


def raw_call(lakefs_server, method: str, api_path: str, body: object = None) -> tuple[int, dict]:
    """A request without lakefs-sdk (which validates some inputs itself): (status, JSON answer)."""
    credentials = f"{lakefs_server.access_key_id}:{lakefs_server.secret_access_key}".encode()
    request = urllib.request.Request(
        lakefs_server.api_url + api_path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": "Basic " + base64.b64encode(credentials).decode(),
            "Content-Type": "application/json",
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# -- server, repositories ------------------------------------------------------------------------------------


def test_health_check_answers_without_credentials(lakefs_server, client):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(lakefs_server.api_url + "/healthcheck", timeout=5) as answer:
        assert answer.status == 204
    lakefs_sdk.HealthCheckApi(client).health_check()


def test_config_describes_an_s3_blockstore(client):
    config = lakefs_sdk.ConfigApi(client).get_config()
    assert config.storage_config.blockstore_type == "s3"
    assert config.version_config.version


def test_env_holds_the_variables_edge_deploy_reads(lakefs_server):
    settings = Settings.from_env(env=lakefs_server.env()).require_lakefs()
    assert settings.api_url == lakefs_server.api_url
    assert settings.s3_endpoint == lakefs_server.s3_endpoint
    assert settings.secret_access_key.reveal() == lakefs_server.secret_access_key


def test_a_new_repository_starts_with_main_at_the_first_commit(lake):
    repository = lake.repos.get_repository(lake.repo)
    assert (repository.id, repository.default_branch) == (lake.repo, "main")
    head = lake.branches.get_branch(lake.repo, "main")
    assert COMMIT_ID.match(head.commit_id)
    first = lake.commits.get_commit(lake.repo, head.commit_id)
    assert (first.message, first.parents, first.generation) == ("Repository created", [], 1)
    assert lake.paths("main") == []


def test_creating_a_repository_twice_conflicts(lake):
    again = lakefs_sdk.RepositoryCreation(name=lake.repo, storage_namespace=f"s3://{lake.repo}/")
    with pytest.raises(ApiException) as failure:
        lake.repos.create_repository(again)
    assert error_of(failure) == (409, "error creating repository: not unique")


def test_a_repository_name_outside_the_spec_pattern_is_refused(lakefs_server):
    # lakefs-sdk refuses such a name itself, so this goes around it
    body = {"name": "Bad_Name", "storage_namespace": "s3://bad/"}
    status, answer = raw_call(lakefs_server, "POST", "/repositories", body)
    assert status == 400
    assert "Bad_Name" in answer["message"]


# -- objects -------------------------------------------------------------------------------------------------


def test_upload_reports_stats_that_stat_and_get_agree_with(lakefs_server, lake):
    data = os.urandom(70_000)
    uploaded = lake.upload("model/weights.pth", data)
    assert (uploaded.path, uploaded.path_type, uploaded.size_bytes) == ("model/weights.pth", "object", len(data))
    assert uploaded.checksum == md5(data)  # the S3 ETag, as lakeFS reports it for S3
    # like lakeFS, the data is written once to a fresh address under the storage namespace
    bucket, _, key = uploaded.physical_address.removeprefix("s3://").partition("/")
    assert bucket == lake.repo and re.fullmatch(r"data/[0-9a-f]{32}", key)
    assert lakefs_server.s3.client(direct=True).get_object(Bucket=bucket, Key=key)["Body"].read() == data

    stat = lake.objects.stat_object(lake.repo, "main", "model/weights.pth")
    assert (stat.checksum, stat.size_bytes, stat.mtime) == (uploaded.checksum, len(data), uploaded.mtime)
    assert stat.content_type == "application/octet-stream"
    assert lake.read("main", "model/weights.pth") == data
    assert lake.read("main", "model/weights.pth", byte_range="bytes=10-99") == data[10:100]
    assert lake.read("main", "model/weights.pth", byte_range="bytes=-5") == data[-5:]


def test_head_object_tells_whether_an_object_exists(lake):
    lake.upload("present.txt", b"here")
    lake.objects.head_object(lake.repo, "main", "present.txt")
    with pytest.raises(ApiException) as failure:
        lake.objects.head_object(lake.repo, "main", "absent.txt")
    assert failure.value.status == 404


def test_an_unsatisfiable_range_is_416(lake):
    lake.upload("small.bin", b"12345")
    with pytest.raises(ApiException) as failure:
        lake.read("main", "small.bin", byte_range="bytes=5-9")
    assert error_of(failure) == (416, "Requested Range Not Satisfiable")


def test_listing_pages_through_every_object_in_order(lake):
    paths = sorted(f"model/part-{index:02d}.bin" for index in range(7))
    for path in paths:
        lake.upload(path, path.encode())
    seen, after, pages = [], "", 0
    while True:
        page = lake.objects.list_objects(lake.repo, "main", prefix="model/", after=after, amount=3)
        seen += [item.path for item in page.results]
        pages += 1
        if not page.pagination.has_more:
            break
        assert page.pagination.next_offset == page.results[-1].path
        after = page.pagination.next_offset
    assert seen == paths
    assert pages == 3
    assert page.pagination.max_per_page == 1000


def test_listing_with_a_delimiter_groups_common_prefixes(lake):
    for path in ("model/a.bin", "model/sub/b.bin", "model/sub/c.bin", "readme.md"):
        lake.upload(path, path.encode())
    top = lake.objects.list_objects(lake.repo, "main", delimiter="/").results
    assert [(item.path, item.path_type) for item in top] == [("model/", "common_prefix"), ("readme.md", "object")]
    inner = lake.objects.list_objects(lake.repo, "main", prefix="model/", delimiter="/").results
    assert [(item.path, item.path_type) for item in inner] == [
        ("model/a.bin", "object"),
        ("model/sub/", "common_prefix"),
    ]
    # paging past a common prefix skips everything under it
    after = lake.objects.list_objects(lake.repo, "main", delimiter="/", after="model/").results
    assert [item.path for item in after] == ["readme.md"]


def test_deleting_an_object_stages_its_removal(lake):
    lake.upload("gone.txt", b"bye")
    committed = lake.commit("add")
    lake.objects.delete_object(lake.repo, "main", "gone.txt")
    with pytest.raises(ApiException) as failure:
        lake.objects.stat_object(lake.repo, "main", "gone.txt")
    assert error_of(failure) == (404, "not found")
    assert lake.read(committed.id, "gone.txt") == b"bye"
    removed = lake.commit("remove")
    assert lake.paths(removed.id) == []


# -- commits and refs ----------------------------------------------------------------------------------------


def test_a_commit_records_message_metadata_and_parent(lake):
    parent = lake.branches.get_branch(lake.repo, "main").commit_id
    lake.upload("model/config.py", b"model = dict()")
    made = lake.commit("add model", metadata={"source_commit": "abc123", "run_id": "r-1"})
    assert COMMIT_ID.match(made.id)
    assert (made.message, made.parents, made.committer) == ("add model", [parent], "admin")
    assert made.metadata == {"source_commit": "abc123", "run_id": "r-1"}
    assert COMMIT_ID.match(made.meta_range_id)
    assert lake.commits.get_commit(lake.repo, made.id) == made
    assert lake.branches.get_branch(lake.repo, "main").commit_id == made.id
    log = lake.refs.log_commits(lake.repo, "main")
    assert [commit.id for commit in log.results] == [made.id, parent]


def test_a_commit_without_changes_is_refused_unless_allowed(lake):
    lake.upload("a.txt", b"a")
    first = lake.commit("first")
    with pytest.raises(ApiException) as failure:
        lake.commit("nothing new")
    assert error_of(failure) == (400, "commit: no changes")
    empty = lake.commit("empty on purpose", allow_empty=True)
    assert empty.parents == [first.id]
    assert empty.meta_range_id == first.meta_range_id


def test_uploading_identical_bytes_again_is_no_change(lake):
    lake.upload("same.bin", b"same bytes")
    lake.commit("first")
    lake.upload("same.bin", b"same bytes")
    with pytest.raises(ApiException) as failure:
        lake.commit("again")
    assert error_of(failure) == (400, "commit: no changes")


def test_every_kind_of_ref_resolves_to_its_commit(lake):
    lake.upload("v.txt", b"one")
    one = lake.commit("one")
    lake.tags.create_tag(lake.repo, lakefs_sdk.TagCreation(id="v1", ref=one.id))
    lake.upload("v.txt", b"two")
    two = lake.commit("two")
    lake.upload("v.txt", b"three (uncommitted)")

    assert lake.read("main", "v.txt") == b"three (uncommitted)"  # a branch reads its staging area
    assert lake.read("main@", "v.txt") == b"two"  # ... and `@` its committed state
    assert lake.read(two.id, "v.txt") == b"two"
    assert lake.read(two.id[:10], "v.txt") == b"two"  # a unique prefix of a commit id
    assert lake.read("v1", "v.txt") == b"one"
    assert lake.read("main~1", "v.txt") == b"one"
    assert lake.commits.get_commit(lake.repo, "v1").id == one.id
    with pytest.raises(ApiException) as failure:
        lake.read("no-such-ref", "v.txt")
    assert error_of(failure) == (404, "not found")


def test_reads_at_a_commit_never_see_later_writes(lake):
    lake.upload("model/w.bin", b"version 1")
    pinned = lake.commit("v1")
    lake.upload("model/w.bin", b"version 2")
    lake.upload("model/new.bin", b"added later")
    lake.commit("v2")
    lake.upload("model/w.bin", b"version 3")

    assert lake.read(pinned.id, "model/w.bin") == b"version 1"
    assert lake.paths(pinned.id, prefix="model/") == ["model/w.bin"]
    stat = lake.objects.stat_object(lake.repo, pinned.id, "model/w.bin")
    assert (stat.checksum, stat.size_bytes) == (md5(b"version 1"), len(b"version 1"))
    assert lake.read("main", "model/w.bin") == b"version 3"


def test_a_branch_created_from_a_ref_starts_at_that_commit(lake):
    lake.upload("base.txt", b"base")
    base = lake.commit("base")
    lake.upload("staged.txt", b"not committed")
    created = lake.branches.create_branch(lake.repo, lakefs_sdk.BranchCreation(name="exp", source="main"))
    assert created == base.id  # the source branch's commit, without its staging area
    assert lake.paths("exp") == ["base.txt"]
    from_tag_source = lake.branches.create_branch(lake.repo, lakefs_sdk.BranchCreation(name="old", source=base.id[:8]))
    assert from_tag_source == base.id
    assert [ref.id for ref in lake.branches.list_branches(lake.repo).results] == ["exp", "main", "old"]

    with pytest.raises(ApiException) as failure:
        lake.branches.create_branch(lake.repo, lakefs_sdk.BranchCreation(name="exp", source="main"))
    assert error_of(failure) == (409, "branch already exists: not unique")
    with pytest.raises(ApiException) as failure:
        lake.branches.create_branch(lake.repo, lakefs_sdk.BranchCreation(name="x", source="nowhere"))
    assert error_of(failure) == (404, "source reference 'nowhere': not found")


def test_tags_point_at_commits(lake):
    lake.upload("t.txt", b"t")
    tagged = lake.commit("tag me")
    ref = lake.tags.create_tag(lake.repo, lakefs_sdk.TagCreation(id="release-1.0", ref="main"))
    assert (ref.id, ref.commit_id) == ("release-1.0", tagged.id)
    assert lake.tags.get_tag(lake.repo, "release-1.0").commit_id == tagged.id
    with pytest.raises(ApiException) as failure:
        lake.tags.create_tag(lake.repo, lakefs_sdk.TagCreation(id="release-1.0", ref="main"))
    assert error_of(failure) == (409, "tag already exists: not unique")
    with pytest.raises(ApiException) as failure:
        lake.tags.get_tag(lake.repo, "release-9")
    assert error_of(failure) == (404, "tag not found")


def test_diff_lists_the_uncommitted_changes(lake):
    lake.upload("kept.txt", b"kept")
    lake.upload("changed.txt", b"before")
    lake.upload("removed.txt", b"removed")
    lake.commit("base")
    lake.upload("changed.txt", b"after")
    lake.upload("added.txt", b"added")
    lake.objects.delete_object(lake.repo, "main", "removed.txt")
    diff = lake.branches.diff_branch(lake.repo, "main").results
    assert [(item.path, item.type) for item in diff] == [
        ("added.txt", "added"),
        ("changed.txt", "changed"),
        ("removed.txt", "removed"),
    ]
    lake.commit("apply")
    assert lake.branches.diff_branch(lake.repo, "main").results == []


# -- merges, diffs between refs, branch deletion ---------------------------------------------------------------


def branch_off(lake, name: str, source: str = "main") -> str:
    return lake.branches.create_branch(lake.repo, lakefs_sdk.BranchCreation(name=name, source=source))


def test_a_merge_is_a_new_commit_with_both_heads_as_parents(lake):
    lake.upload("base.txt", b"base")
    lake.commit("base")
    branch_off(lake, "feature")
    lake.upload("feature.txt", b"f", branch="feature")
    feature = lake.commit("feature work", branch="feature")
    lake.upload("main.txt", b"m")
    main = lake.commit("main work")

    merge = lakefs_sdk.Merge(message="bring feature", metadata={"run_id": "r1"})
    merged = lake.refs.merge_into_branch(lake.repo, "feature", "main", merge)

    commit = lake.commits.get_commit(lake.repo, merged.reference)
    assert commit.parents == [main.id, feature.id]  # lakeFS never fast-forwards
    assert (commit.message, commit.generation) == ("bring feature", 4)
    assert commit.metadata == {"run_id": "r1", ".lakefs.merge.strategy": "default"}
    assert lake.branches.get_branch(lake.repo, "main").commit_id == merged.reference
    assert lake.paths("main") == ["base.txt", "feature.txt", "main.txt"]
    assert lake.branches.get_branch(lake.repo, "feature").commit_id == feature.id


def test_a_squash_merge_has_the_destination_as_its_only_parent(lake):
    lake.upload("base.txt", b"base")
    base = lake.commit("base")
    branch_off(lake, "feature")
    lake.upload("feature.txt", b"f", branch="feature")
    lake.commit("feature work", branch="feature")

    merged = lake.refs.merge_into_branch(lake.repo, "feature", "main", lakefs_sdk.Merge(squash_merge=True))

    commit = lake.commits.get_commit(lake.repo, merged.reference)
    assert commit.parents == [base.id]
    assert commit.message == "Merge 'feature' into 'main'"  # lakeFS's message when none is given
    assert lake.paths(merged.reference) == ["base.txt", "feature.txt"]


# lakeFS's merge table (docs: understand/how/merge): base, source, destination -> result (None: no file).
MERGE_TABLE = [
    ("A", "A", "A", "A"),
    ("A", "B", "B", "B"),
    ("A", "B", "C", "conflict"),
    ("A", "A", "B", "B"),
    ("A", "B", "A", "B"),
    ("A", None, None, None),
    ("A", "B", None, "conflict"),
    ("A", None, "B", "conflict"),
    ("A", "A", None, None),
    ("A", None, "A", None),
]


@pytest.mark.parametrize(("base", "source", "destination", "result"), MERGE_TABLE)
def test_merges_follow_lakefs_merge_table(lakefs_server, lake, base, source, destination, result):
    lake.upload("f", base.encode())
    lake.commit("base")
    branch_off(lake, "source")
    for branch, value in (("source", source), ("main", destination)):
        if value is None:
            lake.objects.delete_object(lake.repo, branch, "f")
        elif value != base:
            lake.upload("f", value.encode(), branch=branch)
        lake.upload(f"side-{branch}", b"s", branch=branch)  # so that both sides have a commit of their own
        lake.commit(f"{branch} side", branch=branch)
    head = lake.branches.get_branch(lake.repo, "main").commit_id

    if result == "conflict":
        with pytest.raises(ApiException) as failure:
            lake.refs.merge_into_branch(lake.repo, "source", "main")
        # lakeFS answers a conflict with an empty MergeResult, not an Error body (see the spec's 409)
        assert (failure.value.status, json.loads(failure.value.body)) == (409, {"reference": ""})
        assert lake.branches.get_branch(lake.repo, "main").commit_id == head
        return
    merged = lake.refs.merge_into_branch(lake.repo, "source", "main").reference
    assert lake.paths(merged) == sorted(["side-main", "side-source", *(["f"] if result else [])])
    if result:
        assert lake.read(merged, "f") == result.encode()


def test_merging_nothing_new_is_400_no_changes_unless_allowed(lake):
    lake.upload("a.txt", b"a")
    lake.commit("a")
    branch_off(lake, "same")
    with pytest.raises(ApiException) as failure:
        lake.refs.merge_into_branch(lake.repo, "same", "main")
    assert error_of(failure) == (400, "update branch main: no changes")
    allowed = lake.refs.merge_into_branch(lake.repo, "same", "main", lakefs_sdk.Merge(allow_empty=True))
    assert lake.paths(allowed.reference) == ["a.txt"]


def test_a_branch_with_uncommitted_changes_takes_no_merge(lake):
    branch_off(lake, "feature")
    lake.upload("f.txt", b"f", branch="feature")
    lake.commit("f", branch="feature")
    lake.upload("staged.txt", b"not committed")
    with pytest.raises(ApiException) as failure:
        lake.refs.merge_into_branch(lake.repo, "feature", "main")
    assert error_of(failure) == (400, "update branch main: main: uncommitted changes (dirty branch)")


def test_diff_between_refs_two_dot_and_three_dot(lake):
    for path in ("a.txt", "b.txt", "c.txt"):
        lake.upload(path, b"1")
    lake.commit("base")
    branch_off(lake, "feature")
    lake.upload("a.txt", b"feature", branch="feature")
    lake.objects.delete_object(lake.repo, "feature", "b.txt")
    lake.upload("d.txt", b"new", branch="feature")
    lake.commit("feature", branch="feature")
    lake.upload("a.txt", b"main")
    lake.upload("c.txt", b"main")
    lake.commit("main")

    def diff(kind: str, **options) -> list[tuple[str, str]]:
        answer = lake.refs.diff_refs(lake.repo, "main", "feature", type=kind, **options)
        return [(item.path, item.type) for item in answer.results]

    # two dot: how feature's tree differs from main's
    assert diff("two_dot") == [("a.txt", "changed"), ("b.txt", "removed"), ("c.txt", "changed"), ("d.txt", "added")]
    # three dot (the default): what merging feature into main would bring, conflicts included
    assert diff("three_dot") == [("a.txt", "conflict"), ("b.txt", "removed"), ("d.txt", "added")]
    assert [(i.path, i.type) for i in lake.refs.diff_refs(lake.repo, "main", "feature").results] == diff("three_dot")
    page = lake.refs.diff_refs(lake.repo, "main", "feature", type="two_dot", amount=2)
    assert page.pagination.has_more and page.pagination.next_offset == "b.txt"
    assert diff("two_dot", prefix="c") == [("c.txt", "changed")]


def test_deleting_a_branch(lake):
    branch_off(lake, "scratch")
    lake.upload("s.txt", b"s", branch="scratch")
    kept = lake.commit("s", branch="scratch")

    lake.branches.delete_branch(lake.repo, "scratch")

    with pytest.raises(ApiException) as failure:
        lake.branches.get_branch(lake.repo, "scratch")
    assert error_of(failure) == (404, "branch not found")
    with pytest.raises(ApiException) as failure:
        lake.branches.delete_branch(lake.repo, "scratch")
    assert error_of(failure) == (404, "branch not found")
    assert lake.read(kept.id, "s.txt") == b"s"  # its commits stay
    with pytest.raises(ApiException) as failure:
        lake.branches.delete_branch(lake.repo, "main")
    assert error_of(failure) == (403, "cannot delete repository default branch")


# -- where the server used to differ from lakeFS ---------------------------------------------------------------


def test_a_branch_and_a_tag_may_share_a_name(lake):
    lake.upload("v.txt", b"1")
    one = lake.commit("one")
    lake.tags.create_tag(lake.repo, lakefs_sdk.TagCreation(id="release", ref=one.id))
    lake.upload("v.txt", b"2")
    two = lake.commit("two")

    assert branch_off(lake, "release") == two.id  # was 409: one namespace for both

    assert lake.read("release", "v.txt") == b"2"  # resolving a name, the branch comes before the tag
    assert lake.tags.get_tag(lake.repo, "release").commit_id == one.id
    lake.branches.delete_branch(lake.repo, "release")
    assert lake.read("release", "v.txt") == b"1"


def test_boolean_query_parameters_are_parsed_as_go_does(lakefs_server, lake):
    lake.upload("a.txt", b"a")
    # lakefs-sdk sends Python's spelling, True/False (was: 501 for every read)
    assert lake.objects.stat_object(lake.repo, "main", "a.txt", presign=False).size_bytes == 1
    assert bytes(lake.objects.get_object(lake.repo, "main", "a.txt", presign=False)) == b"a"
    assert lake.objects.list_objects(lake.repo, "main", presign=False, user_metadata=False).results[0].path == "a.txt"
    stat = f"/repositories/{lake.repo}/refs/main/objects/stat?path=a.txt&presign="
    for spelling in ("0", "f", "F", "FALSE", "false", "False"):
        assert raw_call(lakefs_server, "GET", stat + spelling)[0] == 200, spelling
    status, answer = raw_call(lakefs_server, "GET", stat + "T")
    assert status == 501 and "presign" in answer["message"]  # understood as true: presigning is not implemented
    status, answer = raw_call(lakefs_server, "GET", stat + "yes")
    assert status == 400 and "presign" in answer["message"]


def test_the_same_bytes_with_another_content_type_or_metadata_is_a_change(lakefs_server, lake):
    branch = high_level_repository(lakefs_server, lake.repo).branch("main")
    branch.object("x.bin").upload(data=b"same bytes", content_type="application/octet-stream")
    branch.commit(message="first")
    branch.object("x.bin").upload(data=b"same bytes", content_type="text/plain")
    assert branch.commit(message="content type").get_commit().parents  # was 400 "commit: no changes"
    branch.object("x.bin").upload(data=b"same bytes", content_type="text/plain", metadata={"owner": "edge"})
    branch.commit(message="metadata")
    stat = lake.objects.stat_object(lake.repo, "main", "x.bin")
    assert (stat.content_type, stat.metadata) == ("text/plain", {"owner": "edge"})
    branch.object("x.bin").upload(data=b"same bytes", content_type="text/plain", metadata={"owner": "edge"})
    with pytest.raises(Exception, match="no changes"):
        branch.commit(message="identical")


def high_level_repository(lakefs_server, repo: str):
    client = lakefs.Client(
        host=lakefs_server.endpoint, username=lakefs_server.access_key_id, password=lakefs_server.secret_access_key
    )
    return lakefs.Repository(repo, client=client)


def test_the_high_level_lakefs_client_works_against_the_server(lakefs_server, lake):
    repo = high_level_repository(lakefs_server, lake.repo)
    main = repo.branch("main")
    main.object("data/a.txt").upload(data=b"alpha")
    main.commit(message="a")
    feature = repo.branch("feature").create(source_reference="main")
    feature.object("data/b.txt").upload(data=b"beta")
    feature.commit(message="b")

    merged = feature.merge_into(main)

    with main.object("data/b.txt").reader(mode="rb") as reader:  # reads send presign=False
        assert reader.read() == b"beta"
    assert [obj.path for obj in main.objects(prefix="data/")] == ["data/a.txt", "data/b.txt"]
    assert repo.commit(merged).get_commit().parents[0] == lake.commits.get_commit(lake.repo, "main~1").id
    feature.delete()
    assert [ref.id for ref in repo.branches()] == ["main"]


def test_lakefs_spec_lists_reads_and_writes(lakefs_server, lake):
    lake.upload("data/a.txt", b"alpha")
    lake.commit("a")
    fs = LakeFSFileSystem(
        host=lakefs_server.endpoint, username=lakefs_server.access_key_id, password=lakefs_server.secret_access_key
    )
    assert fs.cat(f"{lake.repo}/main/data/a.txt") == b"alpha"
    assert fs.ls(f"{lake.repo}/main/data/", detail=False) == [f"{lake.repo}/main/data/a.txt"]
    fs.pipe(f"{lake.repo}/main/data/b.txt", b"beta")
    assert lake.read("main", "data/b.txt") == b"beta"


# -- errors --------------------------------------------------------------------------------------------------


def test_missing_things_are_404_with_a_message(lake):
    lake.upload("there.txt", b"x")
    cases = [
        (lambda: lake.repos.get_repository("no-such-repo"), "repository not found"),
        (lambda: lake.branches.get_branch(lake.repo, "no-such-branch"), "branch not found"),
        (lambda: lake.objects.stat_object(lake.repo, "main", "not-there.txt"), "not found"),
        (lambda: lake.commits.get_commit(lake.repo, "f" * 64), "commit not found"),
        (lambda: lake.objects.stat_object("no-such-repo", "main", "there.txt"), "repository not found"),
    ]
    for call, message in cases:
        with pytest.raises(ApiException) as failure:
            call()
        assert error_of(failure) == (404, message)


def test_wrong_credentials_are_401(lakefs_server):
    configuration = lakefs_sdk.Configuration(
        host=lakefs_server.api_url, username=lakefs_server.access_key_id, password="wrong-secret"
    )
    with lakefs_sdk.ApiClient(configuration) as wrong, pytest.raises(ApiException) as failure:
        lakefs_sdk.RepositoriesApi(wrong).list_repositories()
    assert error_of(failure) == (401, "error authenticating request")


def test_endpoints_not_implemented_answer_501(lakefs_server, lake):
    with pytest.raises(ApiException) as failure:
        lake.repos.delete_repository(lake.repo)
    status, message = error_of(failure)
    assert status == 501
    assert message == f"not implemented by the test lakeFS server: DELETE /api/v1/repositories/{lake.repo}"
    with pytest.raises(ApiException) as failure:
        lake.refs.find_merge_base(lake.repo, "main", "main")
    assert failure.value.status == 501
    with pytest.raises(ApiException) as failure:  # an implemented endpoint with an option it does not implement
        lake.objects.stat_object(lake.repo, "main", "x", presign=True)
    assert failure.value.status == 501
    status, answer = raw_call(lakefs_server, "GET", "/auth/users")
    assert (status, answer["message"]) == (501, "not implemented by the test lakeFS server: GET /api/v1/auth/users")


# -- the S3 gateway -------------------------------------------------------------------------------------


def test_the_gateway_serves_the_same_bytes_as_the_api(lakefs_server, lake):
    data = os.urandom(50_000)
    lake.upload("model/w.bin", data)
    made = lake.commit("add")
    lake.tags.create_tag(lake.repo, lakefs_sdk.TagCreation(id="v1", ref=made.id))
    gateway = lakefs_server.gateway()
    checksum = lake.objects.stat_object(lake.repo, made.id, "model/w.bin").checksum
    for ref in (made.id, "main", "v1"):
        answer = gateway.get_object(Bucket=lake.repo, Key=f"{ref}/model/w.bin")
        assert answer["Body"].read() == data
        assert answer["ETag"] == f'"{checksum}"'


def test_writes_through_the_gateway_are_staged_on_the_branch(lakefs_server, lake):
    lakefs_server.gateway().put_object(Bucket=lake.repo, Key="main/via-gateway.txt", Body=b"from boto3")
    stat = lake.objects.stat_object(lake.repo, "main", "via-gateway.txt")
    assert stat.checksum == md5(b"from boto3")
    made = lake.commit("gateway write")
    assert lake.read(made.id, "via-gateway.txt") == b"from boto3"


def test_a_multipart_object_keeps_its_checksum_in_every_ref(lakefs_server, lake):
    data = os.urandom(11 * MiB)
    parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    gateway = lakefs_server.gateway()
    gateway.upload_fileobj(io.BytesIO(data), lake.repo, "main/big.bin", Config=parts)
    made = lake.commit("big")
    stat = lake.objects.stat_object(lake.repo, made.id, "big.bin")
    assert stat.checksum.endswith("-3")
    assert stat.size_bytes == len(data)
    assert gateway.head_object(Bucket=lake.repo, Key=f"{made.id}/big.bin")["ETag"] == f'"{stat.checksum}"'
    downloaded = io.BytesIO()
    gateway.download_fileobj(lake.repo, f"{made.id}/big.bin", downloaded, Config=parts)
    assert downloaded.getvalue() == data


def test_a_wrong_secret_is_refused_with_signature_does_not_match(lakefs_server, lake):
    lake.upload("f.txt", b"f")
    wrong = lakefs_server.gateway(max_attempts=1, secret_access_key="not-the-secret")  # was: any secret passed
    calls = [
        lambda: wrong.get_object(Bucket=lake.repo, Key="main/f.txt"),
        lambda: wrong.put_object(Bucket=lake.repo, Key="main/sneaked-in.txt", Body=b"x"),
        lambda: wrong.list_objects_v2(Bucket=lake.repo, Prefix="main/"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as failure:
            call()
        assert failure.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        error = failure.value.response["Error"]
        assert (error["Code"], error["Message"]) == (
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )
    assert lake.paths("main") == ["f.txt"]


def test_an_unknown_access_key_is_denied_as_lakefs_denies_it(lakefs_server, lake):
    lake.upload("f.txt", b"f")
    stranger = lakefs_server.gateway(max_attempts=1, access_key_id="AKIANOBODYKNOWSTHIS")
    with pytest.raises(ClientError) as failure:
        stranger.get_object(Bucket=lake.repo, Key="main/f.txt")
    # lakeFS looks the key up and answers AccessDenied when it has none (AWS S3 says InvalidAccessKeyId)
    assert failure.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert failure.value.response["Error"]["Code"] == "AccessDenied"


def test_presigned_urls_are_verified_too(lakefs_server, lake):
    lake.upload("f.txt", b"presigned")
    url = lakefs_server.gateway(signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": lake.repo, "Key": "main/f.txt"}, ExpiresIn=60
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as answer:
        assert answer.read() == b"presigned"
    with pytest.raises(urllib.error.HTTPError) as failure:
        opener.open(url.replace("main/f.txt", "main/other.txt"), timeout=10)  # the signature covers the path
    body = failure.value.read().decode()
    assert failure.value.code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in body and "<RequestId>" in body


def test_the_gateway_writes_to_branches_only(lakefs_server, lake):
    lake.upload("f.txt", b"f")
    made = lake.commit("c")
    lake.tags.create_tag(lake.repo, lakefs_sdk.TagCreation(id="v1", ref=made.id))
    gateway = lakefs_server.gateway(max_attempts=1)
    for ref in (made.id, made.id[:12], "v1", "main@", "main~1"):  # was: any ref could be written to
        with pytest.raises(ClientError) as failure:
            gateway.put_object(Bucket=lake.repo, Key=f"{ref}/new.txt", Body=b"new")
        assert failure.value.response["Error"]["Code"] == "NoSuchBucket", ref
        with pytest.raises(ClientError) as failure:
            gateway.create_multipart_upload(Bucket=lake.repo, Key=f"{ref}/big.bin")
        assert failure.value.response["Error"]["Code"] == "NoSuchBucket", ref
    gateway.delete_object(Bucket=lake.repo, Key=f"{made.id}/f.txt")  # lakeFS: 204, and nothing happens
    assert lake.paths(made.id) == ["f.txt"] and lake.paths("main") == ["f.txt"]
    assert lake.branches.diff_branch(lake.repo, "main").results == []


def test_the_gateway_resolves_refs_as_the_api_does(lakefs_server, lake):
    lake.upload("v.txt", b"1")
    one = lake.commit("one")
    lake.tags.create_tag(lake.repo, lakefs_sdk.TagCreation(id="v1", ref=one.id))
    lake.upload("v.txt", b"2")
    two = lake.commit("two")
    lake.upload("v.txt", b"3 (staged)")
    gateway = lakefs_server.gateway(max_attempts=1)
    expected = {
        "main": b"3 (staged)",
        "main@": b"2",
        two.id: b"2",
        two.id[:8]: b"2",  # was NoSuchKey: short ids and ref expressions were taken as literal names
        "main~1": b"1",
        f"{two.id[:10]}^1": b"1",
        "v1": b"1",
    }
    for ref, data in expected.items():
        assert gateway.get_object(Bucket=lake.repo, Key=f"{ref}/v.txt")["Body"].read() == data, ref
    assert gateway.head_object(Bucket=lake.repo, Key="main~1/v.txt")["ContentLength"] == 1
    with pytest.raises(ClientError) as failure:
        gateway.get_object(Bucket=lake.repo, Key="no-such-ref/v.txt")
    assert failure.value.response["Error"]["Code"] == "NoSuchKey"


def test_the_gateway_lists_branches_and_objects(lakefs_server, lake):
    for path in ("model/a.bin", "model/sub/b.bin", "model/sub/c.bin"):
        lake.upload(path, path.encode())
    branch_off(lake, "dev")
    gateway = lakefs_server.gateway()

    top = gateway.list_objects_v2(Bucket=lake.repo, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["dev/", "main/"]  # lakeFS shows branches on top
    inner = gateway.list_objects_v2(Bucket=lake.repo, Prefix="main/model/", Delimiter="/")
    assert [c["Key"] for c in inner["Contents"]] == ["main/model/a.bin"]
    assert [p["Prefix"] for p in inner["CommonPrefixes"]] == ["main/model/sub/"]
    pages = gateway.get_paginator("list_objects_v2").paginate(
        Bucket=lake.repo, Prefix="main/", PaginationConfig={"PageSize": 2}
    )
    assert [c["Key"] for page in pages for c in page.get("Contents", [])] == [
        "main/model/a.bin",
        "main/model/sub/b.bin",
        "main/model/sub/c.bin",
    ]
    assert gateway.list_objects(Bucket=lake.repo, Prefix="dev/").get("Contents", []) == []  # staged on main only


def test_gateway_operations_not_implemented_answer_501(lakefs_server, lake):
    lake.upload("f.txt", b"f")
    gateway = lakefs_server.gateway(max_attempts=1)
    with pytest.raises(ClientError) as failure:
        gateway.copy_object(
            Bucket=lake.repo, Key="main/copy.txt", CopySource={"Bucket": lake.repo, "Key": "main/f.txt"}
        )
    assert failure.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert failure.value.response["Error"]["Code"] == "NotImplemented"
    legacy = lakefs_server.gateway(signature_version="s3").generate_presigned_url(  # Signature V2
        "get_object", Params={"Bucket": lake.repo, "Key": "main/f.txt"}, ExpiresIn=60
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(legacy, timeout=10)
    assert refused.value.code == 501 and "<Code>NotImplemented</Code>" in refused.value.read().decode()


def test_a_body_that_does_not_match_its_signed_hash_is_refused(lakefs_server, lake):
    gateway = lakefs_server.gateway(max_attempts=1)

    def swap_the_body(request, **_):  # after signing: the declared x-amz-content-sha256 no longer fits
        request.body = b"tampered!"

    gateway.meta.events.register("before-send.s3.PutObject", swap_the_body)
    with pytest.raises(ClientError) as failure:
        gateway.put_object(Bucket=lake.repo, Key="main/t.txt", Body=b"original!")
    assert failure.value.response["Error"]["Code"] == "XAmzContentSHA256Mismatch"
    assert lake.paths("main") == []


# -- faults --------------------------------------------------------------------------------------------------


def test_a_status_fault_answers_with_a_lakefs_error_body(lakefs_server, lake):
    lake.upload("f.txt", b"f")
    lakefs_server.faults.fail_next(1, status=503)
    with pytest.raises(ApiException) as failure:
        lake.objects.stat_object(lake.repo, "main", "f.txt")
    assert error_of(failure) == (503, "injected fault: HTTP 503")
    assert lake.objects.stat_object(lake.repo, "main", "f.txt").checksum == md5(b"f")


def test_faults_hit_only_the_requests_they_match(lakefs_server, lake):
    lake.upload("f.txt", b"f")
    lakefs_server.faults.fail_next(1, status=403, match=r"/objects/stat\?")
    assert lake.paths("main") == ["f.txt"]
    with pytest.raises(ApiException) as failure:
        lake.objects.stat_object(lake.repo, "main", "f.txt")
    assert failure.value.status == 403


def test_a_reset_is_a_connection_error_for_the_sdk(lakefs_server, lake):
    lake.upload("f.txt", b"f")
    lakefs_server.faults.reset_next(1)
    with lakefs_server.api(retries=False) as no_retries, pytest.raises(urllib3.exceptions.ProtocolError):
        lakefs_sdk.ObjectsApi(no_retries).stat_object(lake.repo, "main", "f.txt")
    assert [fault["mode"] for fault in lakefs_server.faults.triggered()] == ["reset"]


def test_a_truncated_object_body_is_detected_by_the_sdk(lakefs_server, lake):
    lake.upload("model/w.bin", os.urandom(100_000))
    lakefs_server.faults.truncate_next(1, match=r"^GET .*/objects\?")
    with lakefs_server.api(retries=False) as no_retries, pytest.raises(urllib3.exceptions.ProtocolError):
        lakefs_sdk.ObjectsApi(no_retries).get_object(lake.repo, "main", "model/w.bin")


def test_gateway_faults_answer_in_s3_xml_and_leave_the_api_alone(lakefs_server, lake):
    lake.upload("f.txt", b"payload")
    lakefs_server.s3.faults.fail_next(3, status=503)  # on the backing store's proxy: the server never uses it
    lakefs_server.faults.fail_next(1, status=503, match=f"^GET /{lake.repo}/")  # gateway requests only
    assert lake.read("main", "f.txt") == b"payload"
    with pytest.raises(ClientError) as failure:
        lakefs_server.gateway(max_attempts=1).get_object(Bucket=lake.repo, Key="main/f.txt")
    assert failure.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert failure.value.response["Error"]["Code"] == "SlowDown"


def test_control_api_is_served_beside_the_lakefs_api(lakefs_server):
    request = urllib.request.Request(lakefs_server.endpoint + "/_test/faults", data=b'{"mode": "explode"}')
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as failure:
        opener.open(request, timeout=5)
    assert failure.value.code == 400
    assert "mode must be one of status, reset, truncate" in json.loads(failure.value.read())["message"]
