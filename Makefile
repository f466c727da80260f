# Two commands do everything on a fresh machine: `make run` and `make test`. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
SERVICES := registry custody audit
export MCOC_VAR ?= $(CURDIR)/var

.PHONY: help install install-dev epcis-js browser helm infra migrate up run stop status backup restore test lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

# Two sets of pinned dependencies, each installed only when its lock files change (a stamp file in .venv per set):
# requirements.lock is what the services need at run time; requirements-dev.lock adds the tests', lint's and
# benchmarks' tools to it.
PIP := $(PY) -m pip install -q --disable-pip-version-check

install: .venv/.installed-runtime  ## create .venv with the run-time dependencies (only when they changed)

install-dev: .venv/.installed-dev  ## add the development tools: pytest, ruff, mypy, import-linter, playwright...

.venv/.installed-runtime: requirements.lock pyproject.toml
	@echo "[make] installing the pinned run-time dependencies into .venv"
	@test -x $(PY) || python3 -m venv .venv
	@$(PIP) -r requirements.lock
	@$(PIP) --no-deps -e .
	@touch $@

.venv/.installed-dev: .venv/.installed-runtime requirements-dev.lock
	@echo "[make] installing the pinned development dependencies into .venv"
	@$(PIP) -r requirements-dev.lock
	@touch $@

# GS1 France's epcis2.js, the independent EPCIS 2.0 validator the tests run on our documents: installed with npm ci from
# tests/epcis_js/package-lock.json, again only when the lock file changes (a stamp file in node_modules).
EPCIS_JS := tests/epcis_js

epcis-js: $(EPCIS_JS)/node_modules/.installed  ## install epcis2.js (npm), the EPCIS validator the tests use (only when its lock changed)

$(EPCIS_JS)/node_modules/.installed: $(EPCIS_JS)/package-lock.json $(EPCIS_JS)/package.json
	@command -v npm >/dev/null || { echo "[make] npm is missing: install Node.js 18 or later with npm (Debian: apt-get install nodejs npm)"; exit 1; }
	@echo "[make] installing the pinned epcis2.js (the tests' EPCIS validator) into $(EPCIS_JS)/node_modules"
	@cd $(EPCIS_JS) && npm ci --no-audit --no-fund --loglevel=error >/dev/null
	@touch $@

# helm, which the Kubernetes chart's tests (tests/deploy/test_helm_chart.py) render deploy/helm/ with: built from the
# Go module proxy into .venv/bin (3 to 7 minutes with empty Go caches, seconds after), again only when
# HELM_VERSION changes (a stamp file per version in .venv).
HELM_VERSION := v4.3.2
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)

helm: .venv/.installed-helm-$(HELM_VERSION)  ## build helm into .venv/bin (from the Go module proxy, once a version) for the chart's tests

.venv/.installed-helm-$(HELM_VERSION):
	@test -x "$(GO)" || { echo "[make] go is missing: install Go 1.26 or later (helm v4.3.2 needs it; Debian 12's golang-go is too old), or set GO=<path>"; exit 1; }
	@echo "[make] building helm $(HELM_VERSION) from the Go module proxy into .venv/bin (a few minutes, once)"
	@mkdir -p .venv/bin
	@GOBIN=$(CURDIR)/.venv/bin GOFLAGS=-buildvcs=false $(GO) install -v helm.sh/helm/v4/cmd/helm@$(HELM_VERSION) \
	  >.venv/helm-build.log 2>&1 & pid=$$!; \
	  while sleep 15 && kill -0 $$pid 2>/dev/null; do \
	    echo "[make] helm: still building ($$(wc -l <.venv/helm-build.log) modules and packages so far)"; done; \
	  wait $$pid || { tail -n 20 .venv/helm-build.log; echo "[make] building helm failed: .venv/helm-build.log"; exit 1; }
	@rm -f .venv/.installed-helm-* && touch $@

browser:  ## install Debian's chromium if missing (the dashboard's browser tests drive it)
	@command -v chromium >/dev/null || { echo "[make] installing Debian's chromium (for the dashboard's browser tests)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || { echo "[make] could not install chromium: run 'apt-get install chromium' as root"; exit 1; }; }

infra: install  ## start PostgreSQL and Kafka (private, under var/) and create the topics
	@deploy/local/infra.sh start
	@$(PY) -m shared.topics --bootstrap 127.0.0.1:$${MCOC_KAFKA_PORT:-9092}

migrate: infra  ## apply each service's migrations to its own database
	@for s in $(SERVICES); do \
	  echo "[make] migrating $$s"; \
	  (cd services/$$s && ../../$(PY) -m alembic -c alembic.ini upgrade head) || exit 1; \
	done

up: migrate  ## start everything in the background and return
	@deploy/local/services.sh start

run: migrate  ## start everything, print the URLs, and stay in the foreground (Ctrl-C stops everything)
	@deploy/local/run.sh

stop:  ## stop the services, Kafka and PostgreSQL
	@deploy/local/services.sh stop
	@deploy/local/infra.sh stop

status:  ## what is running
	@deploy/local/services.sh status || true
	@deploy/local/infra.sh status || true

# Backups of the local PostgreSQL cluster, and point-in-time recovery into a fresh one (docs/operations.md#backups).
backup:  ## a base backup of the local PostgreSQL cluster into var/backups/<UTC time> (BACKUP=<dir> to choose)
	@deploy/local/backup.sh backup $(BACKUP)

restore:  ## restore BACKUP=var/backups/<time> into a fresh cluster [UNTIL='2026-12-06 10:00:00+00'], then start everything
	@test -n "$(BACKUP)" || { deploy/local/backup.sh list; echo "[make] which one? make restore BACKUP=<folder> [UNTIL='<time>']"; exit 1; }
	@deploy/local/backup.sh restore $(if $(UNTIL),--until "$(UNTIL)") "$(BACKUP)"
	@$(MAKE) --no-print-directory up

test: install-dev epcis-js browser helm infra  ## run the whole test suite against real PostgreSQL and Kafka
	@$(PY) -m pytest $(PYTEST_ARGS)

bench: install-dev infra  ## run every benchmark, print the table of targets (BENCH_ARGS="--only write,trace --docs": --docs writes docs/benchmarks.md)
	@$(PY) -m bench $(BENCH_ARGS)

lint: install-dev  ## ruff (lint and format check), mypy on shared/ and the services, import-linter's contracts
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/mypy shared $(foreach s,$(SERVICES),services/$(s)/$(s))
	@if [ -f .importlinter ]; then .venv/bin/lint-imports --no-cache .importlinter; \
	  else echo "[make] no .importlinter file: import contracts not checked"; fi

format: install-dev  ## apply ruff's formatting and safe fixes
	@.venv/bin/ruff format .
	@.venv/bin/ruff check --fix .

clean: stop  ## stop everything and delete var/ (databases, Kafka data; the jar cache too)
	rm -rf var
