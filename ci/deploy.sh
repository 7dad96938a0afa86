#!/usr/bin/env bash
# Deploy the service to an AKS environment, or roll it back.
#
#   ci/deploy.sh [--dry-run] render|apply|rollback staging|production
#
# render    deploy/overlays/ENV with the service image pinned by digest ($SERVICE_IMAGE, repository@sha256:...,
#           from the build job's dotenv report) and the workers pinned to this release's launch plan version
#           (EDGE_FLYTE_LAUNCH_PLAN_VERSION: the tag, else the commit, as ci/flyte-register.sh registered it)
#           -> dist/deploy/ENV.yaml. Offline; runs in a dry run too.
# apply     render, `kubectl apply`, then wait for both Deployments to roll out ($ROLLOUT_TIMEOUT, 10m); a
#           rollout that does not finish is undone (`kubectl rollout undo`) and the job fails.
# rollback  `kubectl rollout undo` of both Deployments to their previous revision, then wait for it.
# kubectl talks to the cluster in $KUBECONFIG (ci/azure-login.sh --aks). Old ConfigMaps are not pruned: a
# rollback's pods need the settings they were started with.
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

while [ "${1:-}" = --dry-run ]; do DRY_RUN=1; shift; done
action=${1:-} env=${2:-}
case "$action" in render | apply | rollback) ;; *) die "usage: ci/deploy.sh [--dry-run] render|apply|rollback ENV" ;; esac
overlay=deploy/overlays/$env
[ -n "$env" ] && [ -f "$overlay/kustomization.yaml" ] || die "no overlay '$env': choose one of $(ls deploy/overlays | xargs)"
namespace=$(sed -n 's/^namespace: *//p' "$overlay/kustomization.yaml")
[ -n "$namespace" ] || die "$overlay/kustomization.yaml sets no namespace"
deployments=(deployment/edge-deploy-api deployment/edge-deploy-worker)
rendered=dist/deploy/$env.yaml

render() {
  [[ "${SERVICE_IMAGE:-}" =~ ^([^@[:space:]]+)@(sha256:[0-9a-f]{64})$ ]] ||
    die "SERVICE_IMAGE must be the service image by digest (repository@sha256:<64 hex>), got '${SERVICE_IMAGE:-}':" \
      "deploy what the build job pushed (dist/images/service.env), never a tag"
  local repository=${BASH_REMATCH[1]} digest=${BASH_REMATCH[2]} wrapper=dist/deploy/$env version
  version=$(release_version)
  mkdir -p "$wrapper"
  cat >"$wrapper/kustomization.yaml" <<YAML
# Written by ci/deploy.sh: $overlay with the image the pipeline built, by digest, and its launch plan version.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../../$overlay
images:
  - name: edge-deploy-service
    newName: $repository
    digest: $digest
configMapGenerator:
  - name: edge-deploy-config
    behavior: merge
    literals:
      - EDGE_FLYTE_LAUNCH_PLAN_VERSION=$version
YAML
  kubectl kustomize "$wrapper" >"$rendered.tmp"
  mv "$rendered.tmp" "$rendered"
  log "rendered $rendered: $env (namespace $namespace) with $repository@$digest, launch plan version $version"
}

wait_for_rollout() {
  local deployment
  for deployment in "${deployments[@]}"; do
    run kubectl --namespace "$namespace" rollout status "$deployment" --timeout "${ROLLOUT_TIMEOUT:-10m}" || return 1
  done
}

case "$action" in
  render) render ;;
  apply)
    render
    run kubectl apply --namespace "$namespace" --filename "$rendered"
    if ! wait_for_rollout; then
      log "the rollout did not finish: undoing it"
      run kubectl --namespace "$namespace" rollout undo "${deployments[@]}"
      wait_for_rollout || true
      die "$env was not deployed: the new pods did not become ready in ${ROLLOUT_TIMEOUT:-10m} (kubectl describe pods -n $namespace)"
    fi
    ;;
  rollback)
    run kubectl --namespace "$namespace" rollout undo "${deployments[@]}"
    wait_for_rollout
    ;;
esac
