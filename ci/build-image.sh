#!/usr/bin/env bash
# Build one of the project's images, push it by commit tag (and version tag on a git tag), record its digest.
#
#   ci/build-image.sh [--dry-run] [--no-push] conversion|builder|service|ci-tools
#
# Pushed as $IMAGE_REGISTRY/$IMAGE_NAMESPACE/NAME:$CI_COMMIT_SHORT_SHA, plus :$CI_COMMIT_TAG on a tag pipeline.
# The digest the registry gave is written to $DIGEST_DIR/NAME.env (NAME_IMAGE=repository@sha256:..., a GitLab
# dotenv report) and NAME.json; later jobs deploy and register that reference, never a tag. NAME.cdx.json is the
# image's CycloneDX SBOM (ci/sbom.py: its Python and Debian packages and its base, read from its files), written
# with --no-push too (a merge request builds every image and pushes none).
#
# The base is PYTHON_BASE from images/base-images.env (the environment overrides it). A release (a tag, or
# REQUIRE_PINNED_BASES=true) is refused on a base that is not pinned by digest; any build records the digest it
# was built on in NAME.json and in the labels org.opencontainers.image.base.name / .base.digest.
#
# Same commit, same digest: when the commit tag is already in the registry (a retried or re-run pipeline) the
# image is not built again and the digest already there is recorded (REBUILD=1 builds anyway). A build that
# does run gets SOURCE_DATE_EPOCH (the commit's time) as a build argument (BuildKit stamps it into the image
# config); the service image's context has fixed mtimes and no .pyc, so its layers depend only on the files.
# How far each builder goes: docs/delivery.md.
#
# Variables: IMAGE_REGISTRY (host[:port][/path]; default $ACR_NAME.azurecr.io), IMAGE_NAMESPACE (edge-deploy),
# IMAGE_REGISTRY_INSECURE=true for a plain-HTTP registry, BUILD_NO_CACHE=true to build without the engine's
# layer cache (a GitLab dind engine starts empty anyway), DIGEST_DIR (dist/images), PYTHON_BASE (the images'
# base), CI_COMMIT_SHA / CI_COMMIT_SHORT_SHA / CI_COMMIT_TAG / CI_PROJECT_URL (GitLab's; git is
# asked when unset). Log in to the registry first (ci/azure-login.sh --acr, or docker login).
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

push=1
while (($#)); do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --no-push) push=0 ;;
    -*) die "unknown option $1 (usage: ci/build-image.sh [--dry-run] [--no-push] conversion|builder|service|ci-tools)" ;;
    *) break ;;
  esac
  shift
done
name=${1:-}
case "$name" in
  conversion | builder | service | ci-tools) ;;
  *) die "name the image: conversion, builder, service or ci-tools (got '${name}')" ;;
esac
PYTHON_BASE=${PYTHON_BASE:-$(sed -n 's/^PYTHON_BASE=//p' images/base-images.env)}
if [[ ! "$PYTHON_BASE" =~ @sha256:[0-9a-f]{64}$ ]]; then
  if [ -n "${CI_COMMIT_TAG:-}" ] || [ "${REQUIRE_PINNED_BASES:-false}" = true ]; then
    die "PYTHON_BASE ($PYTHON_BASE) is not pinned by digest, and a release is built only on pinned bases:" \
      "run ci/pin-base-images.py where the registry is reachable and commit images/base-images.env"
  fi
  log "warning: PYTHON_BASE ($PYTHON_BASE) is not pinned by digest (images/base-images.env); the digest it resolves" \
    "to now is recorded in $name.json"
fi

IMAGE_REGISTRY=${IMAGE_REGISTRY:-${ACR_NAME:+$ACR_NAME.azurecr.io}}
REQUIRE_HINT="the registry to push to: IMAGE_REGISTRY=host[:port] or ACR_NAME=<registry name>" require IMAGE_REGISTRY
repository="$IMAGE_REGISTRY/${IMAGE_NAMESPACE:-edge-deploy}/$name"
revision=${CI_COMMIT_SHA:-$(git rev-parse HEAD)}
commit_tag=${CI_COMMIT_SHORT_SHA:-$(git rev-parse --short=8 HEAD)}
version_tag=${CI_COMMIT_TAG:-}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct "$revision")}
digest_dir=${DIGEST_DIR:-dist/images}
insecure=()
[ "${IMAGE_REGISTRY_INSECURE:-false}" = true ] && insecure=(--insecure)
tags=("$commit_tag")
[ -n "$version_tag" ] && tags+=("$version_tag")

# The digest of REF in the registry, or nothing when it is not there (or cannot be read: then we build).
registry_digest() {
  docker manifest inspect --verbose "${insecure[@]}" "$1" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Descriptor"]["digest"])' 2>/dev/null || true
}

# The service image's context: two trees laid out from / (packages, then the app and its entry point), so that
# every directory a COPY creates comes from the context with its mtime; all mtimes fixed, no .pyc, permissions
# independent of the umask.
stage_service_context() {
  local context=$1 arch=${SERVICE_WHEEL_ARCH:-x86_64}
  local packages="$context/packages/opt/edge-deploy/site-packages" app="$context/app/opt/edge-deploy/app"
  rm -rf "$context" && mkdir -p "$packages" "$app" "$context/app/usr/local/bin"
  log "installing images/service/requirements.in for cp311 $arch into the context"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --no-compile \
    --target "$packages" --implementation cp --python-version 3.11 --only-binary=:all: \
    --platform "manylinux_2_28_$arch" --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch" \
    -c requirements/runtime.txt -r images/service/requirements.in
  # Console scripts written by pip name this host's interpreter; the image has its own entry point.
  rm -rf "${packages:?}/bin"
  # The files a commit of this tree would hold (tracked and new, not ignored; a clean checkout in CI).
  git ls-files -z --cached --others --exclude-standard -- \
    app edge_deploy tasks workflows images/platforms.yaml images/edge pyproject.toml README.md |
    while IFS= read -r -d '' file; do [ -f "$file" ] && printf '%s\0' "$file"; done |
    tar --null -T - -cf - | tar -xf - -C "$app"
  cp images/service/edge-deploy "$context/app/usr/local/bin/edge-deploy"
  chmod -R u+rwX,go+rX,go-w "$context"
  # One fixed time, not the commit's: the legacy builder's cache matches COPY sources by content alone, so a
  # layer taken from the cache and one built afresh only agree when mtimes never vary. (1980: zip's epoch.)
  find "$context" -exec touch -h -d @315532800 {} +
}

# The registry digest of the base, pulled first when the engine lacks it; nothing for a local-only base.
base_digest() {
  if [[ "$PYTHON_BASE" =~ @(sha256:[0-9a-f]{64})$ ]]; then
    echo "${BASH_REMATCH[1]}"
    return
  fi
  docker image inspect "$PYTHON_BASE" >/dev/null 2>&1 || docker pull --quiet "$PYTHON_BASE" >/dev/null
  docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$PYTHON_BASE" | sed -n '1s/.*@//p'
}

build() {
  local labels=(
    --label "org.opencontainers.image.title=edge-deploy-$name"
    --label "org.opencontainers.image.revision=$revision"
    --label "org.opencontainers.image.version=${version_tag:-$commit_tag}"
    --label "org.opencontainers.image.base.name=$PYTHON_BASE"
  )
  dry_run || base=$(base_digest)
  [ -z "$base" ] || labels+=(--label "org.opencontainers.image.base.digest=$base")
  [ -n "${CI_PROJECT_URL:-}" ] && labels+=(--label "org.opencontainers.image.source=$CI_PROJECT_URL")
  local tag_args=() tag context=.
  for tag in "${tags[@]}"; do tag_args+=(-t "$repository:$tag"); done
  local args=(--build-arg "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" --build-arg "PYTHON_BASE=$PYTHON_BASE")
  # the task images say what they are pushed as: an edge image's provenance names its builder
  case "$name" in builder | conversion) args+=(--build-arg "TASK_IMAGE=$repository:${tags[0]}") ;; esac
  args+=("${labels[@]}" "${tag_args[@]}")
  [ "${BUILD_NO_CACHE:-false}" = true ] && args+=(--no-cache)
  if [ "$name" = service ]; then
    context=build/service-image
    if dry_run; then
      printf 'dry-run: stage the service context in %s (pip install --target ..., git ls-files, mtimes)\n' "$context"
    else
      stage_service_context "$context"
    fi
  fi
  run docker build -f "images/$name/Dockerfile" "${args[@]}" "$context"
}

# The CycloneDX SBOM of the image REF (built or pulled here) as NAME.cdx.json.
sbom() {
  mkdir -p "$digest_dir"
  python3 ci/sbom.py "$1" "$digest_dir/$name.cdx.json" --name "$repository"
}

# Record NAME's digest: NAME.env for later jobs, NAME.json for people and tests. Temp + rename.
record() {
  local digest=$1 built=$2 variable base_name base_digest labels
  variable="$(tr 'a-z-' 'A-Z_' <<<"$name")_IMAGE"
  labels='{{index .Config.Labels "org.opencontainers.image.base.name"}} {{index .Config.Labels "org.opencontainers.image.base.digest"}}'
  read -r base_name base_digest < <(docker image inspect --format "$labels" "$repository@$digest" 2>/dev/null) || true
  mkdir -p "$digest_dir"
  printf '%s=%s@%s\n' "$variable" "$repository" "$digest" >"$digest_dir/.$name.env.tmp"
  python3 - "$digest_dir/.$name.json.tmp" "$name" "$repository" "$digest" "$built" "$revision" \
    "$base_name" "$base_digest" "${tags[@]}" <<'PY'
import json, sys
path, name, repository, digest, built, revision, base_name, base_digest, *tags = sys.argv[1:]
record = {"image": name, "repository": repository, "digest": digest, "reference": f"{repository}@{digest}",
          "tags": tags, "revision": revision, "built": built == "true",
          "base": {"name": base_name or None, "digest": base_digest or None}}
with open(path, "w") as out:
    json.dump(record, out, indent=2)
    out.write("\n")
PY
  mv "$digest_dir/.$name.json.tmp" "$digest_dir/$name.json"
  mv "$digest_dir/.$name.env.tmp" "$digest_dir/$name.env"
  log "$name: $repository@$digest"
}

if ((push)) && [ "${REBUILD:-0}" != 1 ] && ! dry_run; then
  existing=$(registry_digest "$repository:$commit_tag")
  if [ -n "$existing" ]; then
    log "$repository:$commit_tag is already in the registry ($existing): this commit is not built again"
    docker pull --quiet "$repository@$existing" >/dev/null  # for its SBOM (and its version tag)
    if [ -n "$version_tag" ]; then
      docker tag "$repository@$existing" "$repository:$version_tag"
      docker push "$repository:$version_tag"
    fi
    record "$existing" false
    sbom "$repository@$existing"
    exit 0
  fi
fi

base=""
build
if ((!push)); then
  dry_run || sbom "$repository:$commit_tag"
  exit 0
fi
if dry_run; then
  for tag in "${tags[@]}"; do run docker push "$repository:$tag"; done
  log "dry run: nothing was pushed, so no digest is recorded for $name"
  exit 0
fi
# The digest is the registry's answer to the push of the commit tag (the engine prints it last).
push_log=$(docker push "$repository:$commit_tag")
printf '%s\n' "$push_log" >&2
digest=$(grep -oE 'digest: sha256:[0-9a-f]{64}' <<<"$push_log" | tail -n 1 | cut -d' ' -f2)
[ -n "$digest" ] || die "docker push of $repository:$commit_tag printed no digest"
[ -z "$version_tag" ] || docker push "$repository:$version_tag"
record "$digest" true
sbom "$repository@$digest"
