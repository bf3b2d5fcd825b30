# Rustbucket Registry. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv installs everything; if it is not on PATH, it is installed into .tools/ with pip.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PYTEST_ARGS ?=
# `make run PORT_OFFSET=100 VAR_DIR=var2`: a second stack beside the first (every port + 100).
PORT_OFFSET ?= 0
VAR_DIR ?= var

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

.PHONY: install
install: $(UV) .venv/.bytecode ## Install every package and dev tool into .venv (uv sync); rbr is .venv/bin/rbr.
	$(UV) sync --all-packages --frozen

# Compiled once per lock: with PYTHONDONTWRITEBYTECODE set (as in the images) Python would
# otherwise compile every imported library at each start, seconds for one `rbr --help`.
.venv/.bytecode: uv.lock | $(UV)
	$(UV) sync --all-packages --frozen --compile-bytecode
	touch $@

.PHONY: run
run: install ## Run broker, S3, migrations, topics and every service on this machine.
	$(UV) run rbr stack --port-offset $(PORT_OFFSET) --var-dir $(VAR_DIR)

.PHONY: test
test: install ## Run all tests: unit, and integration against broker, MariaDB and S3.
	RBR_REQUIRE_INTEGRATION=1 $(UV) run pytest $(PYTEST_ARGS)

.PHONY: browser
browser: ## Install Debian's Chromium for the console's browser tests (if missing).
	@command -v chromium >/dev/null 2>&1 || { \
	  sudo=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$sudo apt-get update -q && $$sudo apt-get install -y -q chromium chromium-driver; }
	@command -v chromium

.PHONY: lint
lint: install ## Check formatting, lint and types.
	$(UV) run ruff format --check .
	$(UV) run ruff check .
	$(UV) run mypy

.PHONY: schemas
schemas: install ## Regenerate the JSON Schema files and the AsyncAPI document.
	$(UV) run python -m rbr_schemas.generate

.PHONY: docs
docs: install ## Regenerate docs/configuration.md (the settings reference) from the code.
	$(UV) run rbr config --write-docs

.PHONY: bench
bench: install ## Run the benchmarks and print their figures (see docs/benchmarks.md).
	$(UV) run python -m bench

.PHONY: demo
demo: install ## Run the stack with a simulated fleet of 20 buckets.
	$(UV) run python tools/demo.py --port-offset $(PORT_OFFSET)
