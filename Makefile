# edge-deploy: `make install`, `make test`, `make lint`. See README.md.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check
# The stamp is named after the dependency files, so editing any of them reinstalls.
STAMP := $(VENV)/.installed-$(shell cat requirements/*.txt pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
MMCV_VERSION := 2.1.0
MMDEPLOY_VERSION := 1.3.1
PYTEST_ARGS ?=

.PHONY: install test lint format lock clean demo

install: $(STAMP)

$(STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.11 (python3.11 and its venv module)"; exit 1; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q 'pip==25.3' 'setuptools<80' wheel
	@# torch first: mmcv compiles its ops against it. The CPU build comes from the local wheel dir when present.
	$(PIP) install -q -r requirements/runtime.txt
	@# mmcv 2.1.0 is a source distribution only; pip caches the built wheel, so only the first install compiles (~7 min on 2 cores).
	@$(BIN)/python -c "import mmcv, mmcv.ops" 2>/dev/null || \
		MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=$$(nproc) $(PIP) install --no-build-isolation --no-deps mmcv==$(MMCV_VERSION)
	@# mmdeploy's metadata pins protobuf<=3.20.2, which would break flytekit; its real dependencies are in runtime.txt.
	$(PIP) install -q --no-deps mmdeploy==$(MMDEPLOY_VERSION)
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
