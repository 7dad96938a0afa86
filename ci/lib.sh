# Shared by the pipeline's scripts (sourced, not run): logging, required variables and the dry-run switch.
#
# DRY_RUN=1 (or a script's --dry-run) makes `run` print each command it would call, one line starting
# with "dry-run:", instead of calling it; values of the options in SECRET_OPTIONS are shown as ***.
# Scripts run every step that needs no outside service (rendering, checks) in both modes.

set -euo pipefail

# Options whose value is a credential: never printed, not even in a dry run.
SECRET_OPTIONS=(--password --federated-token --client-secret)

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

dry_run() { [ "${DRY_RUN:-0}" = 1 ] || [ "${DRY_RUN:-}" = true ]; }

# require VAR...: stop naming every unset one and what it is for ($REQUIRE_HINT, optional).
require() {
  local missing=() name
  for name in "$@"; do [ -n "${!name:-}" ] || missing+=("$name"); done
  ((${#missing[@]} == 0)) || die "set ${missing[*]}${REQUIRE_HINT:+ ($REQUIRE_HINT)}"
}

# The command line with the values of credential options replaced by ***, shell-quoted.
redacted() {
  local out=() hide=0 arg option
  for arg in "$@"; do
    if ((hide)); then out+=("***"); hide=0; continue; fi
    for option in "${SECRET_OPTIONS[@]}"; do
      [ "$arg" = "$option" ] && { hide=1; break; }
      [[ "$arg" == "$option="* ]] && { arg="$option=***"; break; }
    done
    out+=("$(printf '%q' "$arg")")
  done
  printf '%s' "${out[*]}"
}

# run CMD...: call it, or in a dry run print it (credentials hidden).
run() {
  if dry_run; then
    printf 'dry-run: %s\n' "$(redacted "$@")"
  else
    "$@"
  fi
}

# The release's version: the git tag, else the commit. Flyte entities are registered under it
# (ci/flyte-register.sh) and the workers launch exactly that version (ci/deploy.sh), never "the latest".
release_version() {
  local version=${CI_COMMIT_TAG:-${CI_COMMIT_SHORT_SHA:-}}
  [ -n "$version" ] || version=$(git rev-parse --short=8 HEAD 2>/dev/null) ||
    die "no release version: set CI_COMMIT_TAG or CI_COMMIT_SHORT_SHA, or run inside the git checkout"
  printf '%s\n' "$version"
}

# The Azure CLI, pip-installed into its own venv when the job image has none (the pipeline's images are
# python:3.11-bookworm). Pinned: a new az release must not change a deploy unannounced.
AZURE_CLI_VERSION=${AZURE_CLI_VERSION:-2.91.0}
ensure_az() {
  command -v az >/dev/null && return 0
  [ -z "${_az_announced:-}" ] || return 0
  if dry_run; then
    _az_announced=1
    echo "dry-run: python3 -m venv /opt/azure-cli && /opt/azure-cli/bin/pip install azure-cli==$AZURE_CLI_VERSION"
    return 0
  fi
  log "installing azure-cli $AZURE_CLI_VERSION"
  python3 -m venv /opt/azure-cli
  /opt/azure-cli/bin/pip install --quiet --disable-pip-version-check "azure-cli==$AZURE_CLI_VERSION"
  ln -sf /opt/azure-cli/bin/az /usr/local/bin/az
}

# kubectl, the official release binary checked against its published sha256, when the image has none.
KUBECTL_VERSION=${KUBECTL_VERSION:-v1.34.2}
ensure_kubectl() {
  command -v kubectl >/dev/null && return 0
  local url="https://dl.k8s.io/release/$KUBECTL_VERSION/bin/linux/amd64/kubectl"
  if dry_run; then
    echo "dry-run: curl -fsSL -o /usr/local/bin/kubectl $url (checked against $url.sha256)"
    return 0
  fi
  log "installing kubectl $KUBECTL_VERSION"
  curl -fsSL --retry 3 -o /usr/local/bin/kubectl.tmp "$url"
  echo "$(curl -fsSL --retry 3 "$url.sha256")  /usr/local/bin/kubectl.tmp" | sha256sum --check --quiet
  chmod +x /usr/local/bin/kubectl.tmp && mv /usr/local/bin/kubectl.tmp /usr/local/bin/kubectl
}

# kubelogin: AKS clusters with Entra ID authentication (local accounts disabled) need it beside kubectl.
ensure_kubelogin() {
  ensure_kubectl
  command -v kubelogin >/dev/null && return 0
  ensure_az
  run az aks install-cli --client-version "${KUBECTL_VERSION#v}" \
    --install-location /usr/local/bin/kubectl --kubelogin-install-location /usr/local/bin/kubelogin
}

# checkov (policy checks of the manifests, Dockerfiles and this pipeline), in a venv of its own: its many
# dependencies must not meet the project's. Pinned, so that a new release's new checks arrive in a commit.
CHECKOV_VERSION=${CHECKOV_VERSION:-3.3.30}
ensure_checkov() {
  [ "$(checkov --version 2>/dev/null)" = "$CHECKOV_VERSION" ] && return 0
  if dry_run; then
    echo "dry-run: python3 -m venv /opt/checkov && /opt/checkov/bin/pip install checkov==$CHECKOV_VERSION"
    return 0
  fi
  log "installing checkov $CHECKOV_VERSION"
  python3 -m venv /opt/checkov
  /opt/checkov/bin/pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  ln -sf /opt/checkov/bin/checkov /usr/local/bin/checkov
}

# The Docker CLI (Debian's docker.io) when the image has none; the engine is the job's docker:dind service.
ensure_docker() {
  command -v docker >/dev/null && return 0
  dry_run && { echo "dry-run: apt-get install docker.io"; return 0; }
  log "installing the Docker CLI"
  apt-get update -q && apt-get install -y -q --no-install-recommends docker.io
}
