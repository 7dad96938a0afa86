# edge-deploy: `make install`, `make test`, `make lint`. See README.md.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check
# The stamp is named after the dependency files and the recipe, so editing any of them reinstalls.
STAMP := $(VENV)/.installed-$(shell cat requirements/*.txt requirements/install.sh pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
# Optional: an index for torch and torchvision (PyTorch's CPU build: https://download.pytorch.org/whl/cpu).
TORCH_INDEX_URL ?=

.PHONY: install test lint format lock clean demo

install: $(STAMP)

$(STAMP):
	PYTHON=$(PYTHON) TORCH_INDEX_URL=$(TORCH_INDEX_URL) requirements/install.sh $(VENV)
	$(PIP) install -q --no-deps -e .
	$(PIP) install -q -r requirements/test.txt
	rm -f $(VENV)/.installed-*
	touch $@

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The main job on the embedded default: a sample model through the whole workflow, no servers.
# Builds the x86_64 image when a Docker engine answers (and says so when it does not).
demo: install
	$(BIN)/edge-deploy demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin requirements/*.txt from requirements/*.in (resolves without installing anything).
lock:
	$(BIN)/python requirements/lock.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# ---- Flyte cluster: a kind cluster with the flyte-binary chart, the task images, registration ----
# Needs docker, kind, kubectl and helm on PATH (none of them runs on the project's build machine).
# See docs/operations.md, "Running on a Flyte cluster".
CLUSTER_NAME ?= edge-deploy
KUBE_CONTEXT := kind-$(CLUSTER_NAME)
FLYTE_CHART_VERSION ?= v1.16.1
# The tag flyte.config's [images] names; override for immutable tags (make task-images register TASK_IMAGE_TAG=...).
TASK_IMAGE_TAG ?= dev
CONVERSION_TASK_IMAGE ?= edge-deploy-conversion:$(TASK_IMAGE_TAG)
BUILDER_TASK_IMAGE ?= edge-deploy-builder:$(TASK_IMAGE_TAG)
FLYTE_PROJECT ?= edge-deploy
FLYTE_DOMAIN ?= development
# Registered entities are immutable per version: the commit, plus a timestamp when the tree has changes.
REGISTER_VERSION ?= $(shell git rev-parse --short=12 HEAD)$(shell git diff --quiet HEAD -- || date -u +-dirty-%Y%m%d%H%M%S)
TASK_IMAGE_FLAGS = -i conversion=$(CONVERSION_TASK_IMAGE) -i builder=$(BUILDER_TASK_IMAGE)

.PHONY: cluster cluster-down task-images register flyte-package

cluster:
	@for tool in docker kind kubectl helm; do command -v $$tool >/dev/null || { echo "error: $$tool is not on PATH (make cluster needs docker, kind, kubectl and helm)"; exit 1; }; done
	kind get clusters 2>/dev/null | grep -qx '$(CLUSTER_NAME)' || kind create cluster --name $(CLUSTER_NAME) --config images/cluster/kind.yaml
	kubectl --context $(KUBE_CONTEXT) apply -f images/cluster/flyte-deps.yaml
	kubectl --context $(KUBE_CONTEXT) -n flyte wait --for=condition=available deployment/postgres deployment/minio --timeout=300s
	kubectl --context $(KUBE_CONTEXT) -n flyte wait --for=condition=complete job/minio-bucket --timeout=300s
	helm repo add flyteorg https://flyteorg.github.io/flyte --force-update
	helm upgrade --install flyte-binary flyteorg/flyte-binary --version $(FLYTE_CHART_VERSION) \
		--kube-context $(KUBE_CONTEXT) --namespace flyte --values images/cluster/flyte-binary-values.yaml --wait --timeout 10m
	@echo "Flyte is up: console http://localhost:30081/console, API localhost:30080 (flyte.config)"

cluster-down:
	kind delete cluster --name $(CLUSTER_NAME)

task-images:
	docker build -f images/conversion/Dockerfile -t $(CONVERSION_TASK_IMAGE) .
	docker build -f images/builder/Dockerfile -t $(BUILDER_TASK_IMAGE) .
	kind load docker-image --name $(CLUSTER_NAME) $(CONVERSION_TASK_IMAGE) $(BUILDER_TASK_IMAGE)

# Fast registration: the code goes up with the registration, so a code change needs no image rebuild.
register: install
	$(BIN)/pyflyte -c flyte.config register --project $(FLYTE_PROJECT) --domain $(FLYTE_DOMAIN) \
		--version $(REGISTER_VERSION) $(TASK_IMAGE_FLAGS) --activate-launchplans workflows

# The serialized specs (protobuf) in a tarball, for `flytectl register files` or a review; offline.
flyte-package: install
	mkdir -p dist
	FLYTE_LOCAL_CACHE_ENABLED=false $(BIN)/pyflyte --pkgs workflows package --force $(TASK_IMAGE_FLAGS) \
		--copy all -o dist/edge-deploy-flyte.tgz
