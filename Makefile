# celery-pgqueue-benchmark: `make bench` runs the comparison, `make test` the tests. `make` lists the rest.
.DEFAULT_GOAL := help
SHELL := /bin/bash

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
DATA := $(ROOT)/.data
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
# uv from PATH, else a project-local copy (never the system Python: PEP 668).
UV := $(shell command -v uv 2>/dev/null || echo $(ROOT)/.tools/bin/uv)
export PATH := $(VENV)/bin:$(PATH)
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Development-only defaults; production sets these as secrets (docs/deploy.md).
export ADMIN_USER ?= admin
export ADMIN_PASSWORD ?= admin
export SECRET_KEY ?= dev-only-not-secret
ARGS ?=

##@ Help
.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Setup
$(ROOT)/.tools/bin/uv:
	python3 -m venv $(ROOT)/.tools
	$(ROOT)/.tools/bin/pip install --quiet uv

# Bytecode compiled at install, as the images do (Dockerfile: UV_COMPILE_BYTECODE): where Python may not
# write it (PYTHONDONTWRITEBYTECODE), every process would otherwise compile psycopg and the rest from
# source at each start (a pgqueue worker's start-up: docs/benchmarks.md, "pgqueue").
$(VENV)/.synced: $(UV) uv.lock pyproject.toml shared/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --quiet --compile-bytecode
	@$(VENV)/bin/python -m compileall -q -j 0 $(ROOT)/shared $(ROOT)/services >/dev/null
	@touch $@

.PHONY: setup
setup: $(VENV)/.synced ## Install every dependency into .venv (pinned by uv.lock)

.PHONY: bootstrap
bootstrap: ## Install the tools for the platform (uv, honcho; overmind, flyctl, tmux where possible)
	@bash scripts/bootstrap.sh

##@ Database
.PHONY: db-up
db-up: setup ## Start the embedded PostgreSQL (data under .data/, URL in .data/embedded-pg.url)
	@$(PY) -m shared.embedded up

.PHONY: db-down
db-down: setup ## Stop the embedded PostgreSQL
	@$(PY) -m shared.embedded down

.PHONY: migrate
migrate: setup ## Apply both migration lineages (app and queue)
	@$(PY) -m shared.migrate upgrade

##@ Development
# The database of make dev and dev-*: DATABASE_URL, else what the settings find (the embedded cluster,
# then LOCAL_PG_ADDR), else the embedded cluster started here (make db-up); then the migrations.
.PHONY: dev-db
dev-db: setup
	@bash scripts/dev.sh database
	@$(MAKE) --no-print-directory migrate

.PHONY: dev
dev: dev-db ## Run web, celery and pgqueue from Procfile.dev (Overmind, else honcho); make db-up first if no PostgreSQL is found
	@bash scripts/dev.sh start

.PHONY: dev-web
dev-web: dev-db ## Run the web service alone
	@bash scripts/dev.sh one web

.PHONY: dev-celery
dev-celery: dev-db ## Run the Celery worker alone
	@bash scripts/dev.sh one celery

.PHONY: dev-pgqueue
dev-pgqueue: dev-db ## Run the pgqueue worker alone
	@bash scripts/dev.sh one pgqueue

.PHONY: dev-stop
dev-stop: ## Stop everything `make dev` and `dev-*` started (by PID file)
	@bash scripts/dev.sh stop

##@ Quality
.PHONY: test
test: setup ## Run the whole test suite (sets up what it needs)
	@$(PY) -m pytest $(ARGS)

.PHONY: lint
lint: setup ## ruff, mypy on shared/, import-linter contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

##@ Benchmarks
.PHONY: bench
bench: setup ## Every contender side by side: default matrix, report in reports/ (own PostgreSQL unless DATABASE_URL); ARGS=--help
	@$(PY) -m shared.bench compare $(ARGS)

.PHONY: bench-pgqueue
bench-pgqueue: setup ## pgqueue's figures beside the raw-SQL ceiling (embedded PostgreSQL unless DATABASE_URL is set); ARGS=--help
	@$(PY) -m shared.bench queue --adapter pgqueue $(ARGS)

.PHONY: bench-celery
bench-celery: setup ## Celery's own figures beside the raw-SQL ceiling: 3 brokers x 2 configurations x 2 pools; ARGS=--help
	@$(PY) -m shared.bench queue --adapter celery $(ARGS)

.PHONY: bench-web
bench-web: setup ## Admin pages on 1,000,000 pgqueue jobs: median times, then 200 req/s for 30 s (loopback); ARGS=--help
	@$(PY) -m shared.bench web $(ARGS)

##@ Deployment
.PHONY: deploy
deploy: ## Deploy to Fly.io: flyctl deploy with fly.toml (docs/deploy.md); ARGS go to flyctl
	@fly=$$(command -v flyctl || command -v fly); \
	if [ -z "$$fly" ]; then \
	  echo "make deploy: flyctl is not installed (neither flyctl nor fly is on PATH)." \
	    "Install it (https://fly.io/docs/flyctl/install/; 'make bootstrap' does on macOS)," \
	    "run 'flyctl auth login', then follow docs/deploy.md." >&2; \
	  exit 1; \
	fi; \
	"$$fly" deploy $(ARGS)
