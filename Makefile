# The two commands: `make run` (the pipeline end to end on the local stack) and `make test`.
# Everything else they need (virtualenv, Python packages, servers, geo data) they install.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLICKSTREAM := $(BIN)/clickstream
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)

.PHONY: help prereqs install lint unit integration test up down status logs schema run readme bench bench-ingest bench-batch acceptance clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

prereqs: ## check the tools a fresh machine must have (Python 3.11+, JDK 17+, Maven, npm)
	@missing=""; \
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	  || missing="$$missing\n  - Python >= 3.11 as '$(PYTHON)' (set PYTHON=/path/to/python3.11)"; \
	java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])' \
	  || missing="$$missing\n  - a JDK >= 17 as 'java' on PATH (Debian: apt-get install openjdk-17-jdk-headless)"; \
	command -v mvn >/dev/null || missing="$$missing\n  - Maven as 'mvn' (Debian: apt-get install maven)"; \
	command -v npm >/dev/null || missing="$$missing\n  - npm (Debian: apt-get install npm)"; \
	if [ -n "$$missing" ]; then echo -e "missing prerequisites:$$missing"; exit 1; fi

$(STAMP): setup.cfg pyproject.toml | prereqs
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## create .venv and install the package with its dev tools

lint: install ## ruff (lint + format) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy bench

unit: install ## unit tests only (no servers)
	$(BIN)/pytest tests/unit

integration: install ## integration tests on the real local stack (started if needed)
	$(BIN)/pytest tests/integration

test: lint ## lint, type-check, then every test (starts the local stack if it is not up)
	$(BIN)/pytest tests

up: install ## start the local stack (fetches the servers on first use)
	$(CLICKSTREAM) stack up

down: install ## stop the local stack (by its pid files)
	$(CLICKSTREAM) stack down

status: install ## each server's pid, ports and health
	$(CLICKSTREAM) stack status

logs: install ## tail the servers' logs
	$(CLICKSTREAM) stack logs

schema: up ## create topics, the HBase table and index templates (idempotent)
	$(CLICKSTREAM) schema create

RUN_EVENTS ?= 20000

run: schema ## the pipeline end to end on the local stack
	@mkdir -p .run
	$(CLICKSTREAM) generate --events $(RUN_EVENTS) --hours 6 --truth .run/truth.json
	$(CLICKSTREAM) ingest --exit-when-idle 5 --instance make-run
	$(CLICKSTREAM) batch --from $$(date -u -d '-7 hours' +%Y-%m-%dT%H:00Z) \
	  --to $$(date -u -d '+1 hour' +%Y-%m-%dT%H:00Z)
	$(CLICKSTREAM) inspect --hours 7

bench-ingest: up ## ingest throughput beside its raw ceilings (prints, saves bench/results/)
	$(BIN)/python bench/ingest_bench.py

acceptance: up ## 200k events, 3 SIGKILLs, a 30 s Thrift outage, then the batch job: all checked exactly
	$(BIN)/python bench/acceptance.py

bench-batch: up ## batch runtime for one hour, before and after 10x more data in other days
	$(BIN)/python bench/batch_bench.py

bench: bench-ingest bench-batch ## every benchmark

readme: install ## regenerate the README's settings table from the settings classes
	$(CLICKSTREAM) config reference --update README.md

clean: ## remove the virtualenv and caches (not the stack: `make down` first)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
