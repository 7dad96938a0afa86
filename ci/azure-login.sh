#!/usr/bin/env bash
# Sign the job in to Azure, then (on request) to the container registry and the AKS cluster.
#
#   ci/azure-login.sh [--dry-run] [--acr] [--aks]
#
# Azure, first match wins:
#   1. OIDC, no stored secret: AZURE_ID_TOKEN (GitLab's `id_tokens`, audience api://AzureADTokenExchange) is
#      exchanged through the app registration's federated credential:
#        az login --service-principal --username $AZURE_CLIENT_ID --tenant $AZURE_TENANT_ID --federated-token ...
#   2. Fallback for those without federation: the service principal's secret in the masked, protected CI
#      variable AZURE_CLIENT_SECRET (az login ... --password).
# --acr: `az acr login --name $ACR_NAME` (Docker gets a short-lived ACR token). Without Azure credentials,
#        REGISTRY_USERNAME / REGISTRY_PASSWORD (an ACR repository-scoped token, or any registry's account)
#        are given to `docker login $IMAGE_REGISTRY` instead.
# --aks: `az aks get-credentials` for AKS_RESOURCE_GROUP / AKS_CLUSTER_NAME into $KUBECONFIG, converted by
#        kubelogin to use the az login (clusters with Entra ID authentication and local accounts disabled).
# AZURE_SUBSCRIPTION_ID, when set, selects the subscription.
source "$(dirname "$0")/lib.sh"

acr=0 aks=0
while (($#)); do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --acr) acr=1 ;;
    --aks) aks=1 ;;
    *) die "unknown argument $1 (usage: ci/azure-login.sh [--dry-run] [--acr] [--aks])" ;;
  esac
  shift
done

azure_login() {
  require AZURE_CLIENT_ID AZURE_TENANT_ID
  ensure_az
  local identity=(--service-principal --username "$AZURE_CLIENT_ID" --tenant "$AZURE_TENANT_ID")
  if [ -n "${AZURE_ID_TOKEN:-}" ]; then
    log "Azure: OIDC token of this job, exchanged through the federated credential of $AZURE_CLIENT_ID"
    run az login "${identity[@]}" --federated-token "$AZURE_ID_TOKEN" --output none
  else
    log "Azure: service principal $AZURE_CLIENT_ID with the AZURE_CLIENT_SECRET variable (no OIDC token)"
    run az login "${identity[@]}" --password "$AZURE_CLIENT_SECRET" --output none
  fi
  [ -z "${AZURE_SUBSCRIPTION_ID:-}" ] || run az account set --subscription "$AZURE_SUBSCRIPTION_ID"
}

has_azure_credentials() { [ -n "${AZURE_ID_TOKEN:-}" ] || [ -n "${AZURE_CLIENT_SECRET:-}" ]; }

if has_azure_credentials; then
  azure_login
elif ((aks)) || { ((acr)) && [ -z "${REGISTRY_USERNAME:-}" ]; }; then
  die "no Azure credentials: give the job an OIDC token (id_tokens: AZURE_ID_TOKEN) or set AZURE_CLIENT_SECRET" \
    "(masked), or for the registry alone REGISTRY_USERNAME and REGISTRY_PASSWORD"
fi

if ((acr)); then
  if has_azure_credentials; then
    REQUIRE_HINT="the registry's name, e.g. myregistry for myregistry.azurecr.io" require ACR_NAME
    run az acr login --name "$ACR_NAME"
  else
    IMAGE_REGISTRY=${IMAGE_REGISTRY:-${ACR_NAME:+$ACR_NAME.azurecr.io}}
    require IMAGE_REGISTRY REGISTRY_PASSWORD
    log "registry: docker login $IMAGE_REGISTRY as $REGISTRY_USERNAME"
    if dry_run; then
      run docker login "${IMAGE_REGISTRY%%/*}" --username "$REGISTRY_USERNAME" --password-stdin
    else
      docker login "${IMAGE_REGISTRY%%/*}" --username "$REGISTRY_USERNAME" --password-stdin <<<"$REGISTRY_PASSWORD"
    fi
  fi
fi

if ((aks)); then
  REQUIRE_HINT="the AKS cluster to deploy to" require AKS_RESOURCE_GROUP AKS_CLUSTER_NAME
  ensure_kubelogin
  run az aks get-credentials --resource-group "$AKS_RESOURCE_GROUP" --name "$AKS_CLUSTER_NAME" \
    --file "${KUBECONFIG:-$HOME/.kube/config}" --overwrite-existing
  run kubelogin convert-kubeconfig --login azurecli --kubeconfig "${KUBECONFIG:-$HOME/.kube/config}"
fi
