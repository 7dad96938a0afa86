"""Edge images: hermetic per-platform builds with the docker SDK, content-addressed tags, pushes to an
OCI registry, and a multi-arch index over them.

    from edge_deploy.images.push import ReleaseRequest, build_and_push
    result = build_and_push(ReleaseRequest(...), Settings.from_env())

Modules: `context` (runtime layer + build context), `tags` (content-addressed tags), `build` (docker
engine), `registry` (registry HTTP API), `push` (the whole stage), `errors`.
"""
