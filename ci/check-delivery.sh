#!/usr/bin/env bash
# Offline checks of the delivery files (the lint job; tests/delivery runs it too):
#   1. .gitlab-ci.yml against GitLab's CI schema (check-jsonschema's vendored copy, no network);
#   2. each overlay rendered as ci/deploy.sh renders it (an example digest) and every object checked against the
#      Kubernetes schemas of the versions AKS runs (kubernetes-validate, strict: unknown fields are errors);
#   3. checkov's policies over those rendered overlays, the platform team's deploy/platform/, every Dockerfile
#      and this pipeline: no failed check. A check that does not apply is skipped where it would fire, in a
#      `checkov:skip=ID: reason` comment, never here.
# Needs check-jsonschema, kubernetes-validate (requirements/test.txt), kubectl and checkov (ci/install-tools.sh
# checkov) on PATH.
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

# AKS supports three minor versions at a time; these are the ones checked (`az aks get-versions` for the
# current list). kubernetes-validate ships their schemas.
AKS_KUBERNETES_VERSIONS=${AKS_KUBERNETES_VERSIONS:-1.33.0 1.34.0 1.35.0}
example_digest=sha256:$(printf '%064d' 0)

check-jsonschema --builtin-schema vendor.gitlab-ci .gitlab-ci.yml
for overlay in deploy/overlays/*/; do
  env=$(basename "$overlay")
  SERVICE_IMAGE="example.azurecr.io/edge-deploy/service@$example_digest" CI_COMMIT_SHORT_SHA=${CI_COMMIT_SHORT_SHA:-example} \
    DRY_RUN=1 ci/deploy.sh render "$env"
  for version in $AKS_KUBERNETES_VERSIONS; do
    kubernetes-validate --strict --quiet --kubernetes-version "$version" "dist/deploy/$env.yaml" ||
      die "dist/deploy/$env.yaml does not validate against Kubernetes $version"
  done
  log "$env: valid for Kubernetes $AKS_KUBERNETES_VERSIONS"
done

files=()
for file in .gitlab-ci.yml dist/deploy/*.yaml deploy/platform/*.yaml images/*/Dockerfile; do files+=(-f "$file"); done
# --skip-download and BC_SKIP_MAPPING: offline; checkov otherwise asks its vendor's API for guideline links.
BC_SKIP_MAPPING=TRUE checkov --skip-download --quiet --compact --framework kubernetes dockerfile gitlab_ci "${files[@]}" ||
  die "checkov found failed checks (above)"
log "checkov: no failed check in $((${#files[@]} / 2)) files"
