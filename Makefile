# Two commands do everything on a fresh machine: `make run` and `make test`. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
SERVICES := registry custody audit
export MCOC_VAR ?= $(CURDIR)/var

.PHONY: help install infra migrate up run stop status test lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 10

install: .venv/.installed  ## create .venv and install the pinned dependencies (only when they changed)

.venv/.installed: requirements.lock pyproject.toml
	@command -v chromium >/dev/null || { echo "[make] installing Debian's chromium (for the dashboard's browser tests)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || { echo "[make] could not install chromium: run 'apt-get install chromium' as root"; exit 1; }; }
	@echo "[make] installing pinned Python dependencies into .venv"
	@test -x $(PY) || python3 -m venv .venv
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

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

test: infra  ## run the whole test suite against real PostgreSQL and Kafka
	@$(PY) -m pytest $(PYTEST_ARGS)

bench: infra  ## run every benchmark, print the table of targets (BENCH_ARGS="--only write,trace --readme")
	@$(PY) -m bench $(BENCH_ARGS)

lint: install  ## ruff (lint and format check) and mypy on shared/ and the services
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/mypy shared $(foreach s,$(SERVICES),services/$(s)/$(s))

format: install  ## apply ruff's formatting and safe fixes
	@.venv/bin/ruff format .
	@.venv/bin/ruff check --fix .

clean: stop  ## stop everything and delete var/ (databases, Kafka data; the jar cache too)
	rm -rf var
