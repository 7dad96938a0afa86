"""A lakeFS API server for tests: no real lakeFS can run on this project's machines.

It implements the REST endpoints this project calls, with lakeFS's semantics (branches, tags,
commits with ids and metadata, refs resolved to commits, objects with checksum and size), and
keeps object data in an S3 server laid out as lakeFS's S3 gateway shows it (bucket = repository,
key = `{ref}/{path}`). Every other endpoint answers 501. Faults can be injected through
`/_test/faults` (see tests/fixtures/faults.py).

    python -m tests.lakefs_server --port P --s3-endpoint URL --access-key-id ID --secret-access-key SECRET
"""
