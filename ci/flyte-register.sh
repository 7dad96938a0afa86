#!/usr/bin/env bash
# Register the workflows and launch plans on the Flyte cluster, with the task images pinned by digest.
#
#   ci/flyte-register.sh [--dry-run] DOMAIN
#
# CONVERSION_IMAGE and BUILDER_IMAGE are repository@sha256:... (the build jobs' dotenv reports): tasks name
# their images as {{.image.conversion...}} / {{.image.builder...}}, so `-i conversion=... -i builder=...`
# decides what the cluster runs. The version is the git tag, else the commit (`release_version`): a re-run
# registers the same entities again, and ci/deploy.sh pins the workers to that version. Launch-plan schedules are activated only when ACTIVATE_SCHEDULES=true (the pipeline sets it
# on the default branch and on tags): a feature branch's registration never starts nightly runs.
# Flyte's endpoint and credentials come from flytekit's variables (FLYTE_PLATFORM_URL, FLYTE_CREDENTIALS_*),
# or the file FLYTE_CONFIG names. FLYTE_PROJECT defaults to edge-deploy.
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

while [ "${1:-}" = --dry-run ]; do DRY_RUN=1; shift; done
domain=${1:-}
[ -n "$domain" ] || die "usage: ci/flyte-register.sh [--dry-run] DOMAIN (development, staging or production)"
for variable in CONVERSION_IMAGE BUILDER_IMAGE; do
  [[ "${!variable:-}" =~ ^[^@[:space:]]+@sha256:[0-9a-f]{64}$ ]] ||
    die "$variable must be an image by digest (repository@sha256:<64 hex>), got '${!variable:-}': register what" \
      "the build jobs pushed (dist/images/*.env), never a tag"
done
version=$(release_version)

pyflyte=(pyflyte)
[ -z "${FLYTE_CONFIG:-}" ] || pyflyte+=(--config "$FLYTE_CONFIG")
options=(--project "${FLYTE_PROJECT:-edge-deploy}" --domain "$domain" --version "$version"
  --image "conversion=$CONVERSION_IMAGE" --image "builder=$BUILDER_IMAGE")
if [ "${ACTIVATE_SCHEDULES:-false}" = true ]; then
  options+=(--activate-launchplans)
else
  log "schedules stay inactive (ACTIVATE_SCHEDULES is not true)"
fi
run "${pyflyte[@]}" register "${options[@]}" workflows
# A dry run still proves the registration: pyflyte's own --dry-run imports every task and serializes every
# entity with these images, offline (no cluster is contacted, nothing is uploaded).
if dry_run && command -v pyflyte >/dev/null; then
  log "pyflyte's own offline dry run of that registration"
  FLYTE_LOCAL_CACHE_ENABLED=false "${pyflyte[@]}" register --dry-run --copy none "${options[@]}" workflows
fi
