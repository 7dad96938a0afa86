"""A lakeFS server for tests: no real lakeFS can run on this project's machines.

It implements the REST endpoints this project calls, with lakeFS's semantics (branches with
staging areas, tags, commits with ids and metadata, three-way merges with lakeFS's conflict answer,
diffs between refs, refs resolved to commits, objects with checksum and size), and lakeFS's S3
gateway on the same port (bucket = repository, key = `{ref}/{path}`, Signature V4 verified).
Object data lives in an S3 server (moto) under the repository's bucket, written once per upload.
Every other endpoint answers 501. Faults can be injected through `/_test/faults` (see
tests/fixtures/faults.py); they apply to API and gateway requests alike.

    python -m tests.lakefs_server --port P --s3-endpoint URL --access-key-id ID --secret-access-key SECRET
"""
