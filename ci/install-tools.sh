#!/usr/bin/env bash
# Install the command-line tools a job needs when its image lacks them (each is skipped when present).
#
#   ci/install-tools.sh [--dry-run] docker|kubectl|kubelogin|az|checkov ...
source "$(dirname "$0")/lib.sh"
while [ "${1:-}" = --dry-run ] && shift; do DRY_RUN=1; done
(($#)) || die "usage: ci/install-tools.sh [--dry-run] docker|kubectl|kubelogin|az|checkov ..."
for tool in "$@"; do
  case "$tool" in
    docker) ensure_docker ;;
    kubectl) ensure_kubectl ;;
    kubelogin) ensure_kubelogin ;;
    az) ensure_az ;;
    checkov) ensure_checkov ;;
    *) die "unknown tool '$tool' (docker, kubectl, kubelogin, az or checkov)" ;;
  esac
done
