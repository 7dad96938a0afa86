"""The OCI distribution 1.1 referrers API in front of a real registry that lacks it (Debian's
docker-registry is distribution 2.8; no registry with the API installs on the build machine).

Everything is forwarded to the registry as it came, except what distribution 1.1 adds:
- a manifest PUT whose body names a `subject` is answered with the `OCI-Subject` header, and the
  manifest is indexed under that subject;
- `GET /v2/<name>/referrers/<digest>[?artifactType=...]` answers an OCI image index of the indexed
  descriptors (mediaType, digest, size, artifactType, annotations), with `OCI-Filters-Applied:
  artifactType` when filtered; an unknown subject gets an empty index, as the spec asks.
Only manifests pushed through the proxy are indexed (the index is in memory). Run it with
`python -m tests.referrers_proxy --port P --registry http://127.0.0.1:Q`.
"""
