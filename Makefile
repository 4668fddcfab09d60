# The two commands: `make run` (the pipeline end to end on the local stack) and `make test`.
# Everything else they need (virtualenv, Python packages, servers, geo data) they install.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLICKSTREAM := $(BIN)/clickstream
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)

.PHONY: help prereqs install assets browser lint unit integration test test-secure up down status logs schema run serve readme bench bench-ingest bench-restore bench-batch bench-freshness bench-serving bench-serving-live acceptance chaos clean

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

DASHBOARD := serving/dashboard
ASSETS := $(DASHBOARD)/static/vendor/uPlot.iife.min.js $(DASHBOARD)/static/vendor/uPlot.min.css
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(STAMP): setup.cfg pyproject.toml | prereqs
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) assets ## create .venv and install the package with its dev tools (and the dashboard's assets)

$(ASSETS): $(DASHBOARD)/package.json $(DASHBOARD)/package-lock.json
	cd $(DASHBOARD) && npm ci --no-audit --no-fund --loglevel=error
	@mkdir -p $(DASHBOARD)/static/vendor
	cp $(DASHBOARD)/node_modules/uplot/dist/uPlot.iife.min.js $(DASHBOARD)/node_modules/uplot/dist/uPlot.min.css $(DASHBOARD)/static/vendor/
	cp $(DASHBOARD)/node_modules/uplot/LICENSE $(DASHBOARD)/static/vendor/uPlot.LICENSE

assets: $(ASSETS) ## the dashboard's chart library (uPlot) from the npm registry, by the committed lockfile

$(CHROMIUM):
	@echo "installing Debian's chromium for the dashboard's browser tests (browser downloads are not possible here)"
	$(SUDO) apt-get install -y -q chromium >/dev/null \
	  || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; } \
	  || { echo "could not install chromium: run 'apt-get install chromium' (or set CHROMIUM=/path/to/chromium)"; exit 1; }

browser: $(CHROMIUM) ## Debian's chromium, for the dashboard's browser tests

lint: install ## ruff (lint + format) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy bench

unit: install ## unit tests only (no servers)
	$(BIN)/pytest tests/unit

integration: install browser ## integration tests on the real local stack (started if needed)
	CLICKSTREAM_CHROMIUM=$(CHROMIUM) $(BIN)/pytest tests/integration

test: lint browser ## lint, type-check, every test on the local stack, then the secure stack suite
	CLICKSTREAM_CHROMIUM=$(CHROMIUM) $(BIN)/pytest tests
	$(BIN)/pytest -m secure tests/secure

test-secure: install ## the secure stack suite: its own Kafka + Elasticsearch on 19092/19200 (started if needed)
	$(BIN)/pytest -m secure tests/secure

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

RUN_EVENTS ?= 40000

run: schema ## the pipeline end to end: traffic -> ingest (HBase + speed) -> query -> batch -> query
	@mkdir -p .run
	@set -euo pipefail; \
	start=$$(date -u -d '-2 days' +%Y-%m-%dT00:00Z); \
	hours=$$(( ($$(date -u +%s) - $$(date -u -d "$$start" +%s)) / 3600 )); \
	seam=$$(date -u -d '-3 hours' +%Y-%m-%dT%H:00Z); \
	hour=$$(date -u -d '-4 hours' +%Y-%m-%dT%H:00Z); \
	yesterday=$$(date -u -d '-1 day' +%Y-%m-%dT00:00Z); \
	today=$$(date -u +%Y-%m-%dT00:00Z); \
	end=$$(date -u -d '+1 hour' +%Y-%m-%dT%H:00Z); \
	$(CLICKSTREAM) generate --events $(RUN_EVENTS) --start $$start --hours $$hours --truth .run/truth.json; \
	CLICKSTREAM_SPEED__ALLOWED_LATENESS_S=10800 \
	  $(CLICKSTREAM) ingest --exit-when-idle 5 --instance make-run; \
	echo; echo "== 1. live numbers from the speed layer, [$$start, $$end) =="; \
	$(CLICKSTREAM) query --from $$start --to $$end; \
	$(CLICKSTREAM) query --from $$start --to $$end --group-by country --top 5; \
	echo; echo "== 2. the batch layer passes [$$start, $$seam): the boundary moves to $$seam =="; \
	watermark=$$($(CLICKSTREAM) batch-status --json | $(BIN)/python -c \
	  'import json, sys; print(json.load(sys.stdin)["watermark"] or "")' || true); \
	from=$$start; \
	if [ -n "$$watermark" ] && [[ "$$watermark" < "$$start" ]]; then \
	  echo "(a batch ran here before: starting at its watermark $$watermark, leaving no gap)"; \
	  from=$$watermark; \
	fi; \
	$(CLICKSTREAM) batch --from $$from --to $$seam; \
	echo; echo "== 3. the same query, merged: batch days and hours before $$seam, speed hours and"; \
	echo "   minutes after (the same totals, plus any late events step 1 reported waiting) =="; \
	$(CLICKSTREAM) query --from $$start --to $$end; \
	$(CLICKSTREAM) query --from $$start --to $$end --group-by country --top 5; \
	echo; echo "== 4. one whole hour behind the boundary: unique users exact =="; \
	$(CLICKSTREAM) query --from $$hour --to $$seam --group-by url --top 3; \
	echo; echo "== 5. a whole day (yesterday, from the cube's day rollups): exact too =="; \
	$(CLICKSTREAM) query --from $$yesterday --to $$today --group-by country --top 3; \
	echo; echo "== 6. the closed speed hours sealed: one document per group instead of one per partition =="; \
	$(CLICKSTREAM) seal; \
	echo; echo "== 7. the last 30 days by url: days, quarter days and hours, then the speed layer's"; \
	echo "   sealed hours, its open hour and minutes (the same figures as before sealing) =="; \
	$(CLICKSTREAM) query --from $$(date -u -d '-30 days' +%Y-%m-%dT%H:%M:%SZ) \
	  --to $$(date -u +%Y-%m-%dT%H:%M:%SZ) --group-by url --top 5; \
	echo; $(CLICKSTREAM) inspect --hours 7; \
	echo; echo "ground truth of this run: .run/truth.json"; \
	echo "the dashboard (and the API, /docs): $$($(BIN)/python -c 'from clickstream.settings import load_settings; s = load_settings().serving; print(f"http://{s.host}:{s.port}/")') once \`make serve\` runs"

serve: schema ## the dashboard at / and the HTTP API on serving.port (OpenAPI at /docs and /openapi.json)
	$(CLICKSTREAM) serve

bench-ingest: up ## ingest throughput beside its raw ceilings (prints, saves bench/results/)
	$(BIN)/python bench/ingest_bench.py

bench-restore: up ## how long a daemon takes to restore the speed state of 1,000 events/s x its window
	$(BIN)/python bench/restore_bench.py

acceptance: up ## 200k events, 3 SIGKILLs, a 30 s Thrift outage, then the batch job: all checked exactly
	$(BIN)/python bench/acceptance.py

chaos: up ## 1M events, 3 daemons, 10 SIGKILLs, every server taken away 60 s, a batch mid-run: all checked exactly
	$(BIN)/python bench/chaos.py

bench-batch: up ## batch runtime for one hour, before and after 10x more data in other days
	$(BIN)/python bench/batch_bench.py

bench-freshness: up ## how long an event takes to show in the merged answer at 1,000 events/s
	$(BIN)/python bench/freshness_bench.py

bench-serving: up ## API query latency on 30 days x 5,000 URLs + a speed tail at 1,000 events/s
	$(BIN)/python bench/serving_bench.py

bench-serving-live: up ## the last hour through the API over 600k events ingested for real, checked exactly
	$(BIN)/python bench/serving_live.py

bench: bench-ingest bench-restore bench-batch bench-freshness bench-serving bench-serving-live ## every benchmark

readme: install ## regenerate the README's settings table from the settings classes
	$(CLICKSTREAM) config reference --update README.md

clean: ## remove the virtualenv and caches (not the stack: `make down` first)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
