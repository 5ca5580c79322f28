# The README's two commands are `make up` and `make test`; both install what they need.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install install-dev up test lint typecheck check bench schemas

install:
	$(PIP) install --quiet --disable-pip-version-check -e .

## The dashboard's browser test (tests/ui) drives the distribution's Chromium, never a downloaded one.
## The Kafka tier's broker: Apache Kafka's jars from Maven Central, fetched once (Java 17 and
## Maven from apt-get where missing); status 3 (Maven Central not reachable) leaves the tier
## to skip with the script's one line.
## The agent tier's Claude Code and Codex CLI: from the npm registry, installed once into
## ~/.cache/meterline/npm (Node.js and npm from apt-get where missing); status 3 (the npm
## registry not reachable) leaves the tier to skip with the script's one line.
install-dev:
	$(PIP) install --quiet --disable-pip-version-check -e '.[dev]'
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	deploy/kafka/kafka-local fetch >/dev/null || [ $$? -eq 3 ]
	deploy/agents/install-agents >/dev/null || [ $$? -eq 3 ]

## Run the whole pipeline on this machine (embedded broker and ClickHouse).
up: install
	meterline up

## Install everything the tests need, then run them on the real broker and ClickHouse.
## Two pytest-xdist workers: the end-to-end tests mostly wait on their roles' I/O, so two
## run in about 15 min on 2 cores what one runs in about 21.
test: install-dev
	$(PYTHON) -m pytest -q -n 2

lint: install-dev
	$(PYTHON) -m ruff check .

typecheck: install-dev
	$(PYTHON) -m mypy meterline tests

check: lint typecheck test

schemas:
	$(PYTHON) -m meterline.schemas.json_schema

## Every benchmark as one markdown report (needs wrk: installed here with apt-get if missing).
bench: install-dev
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PYTHON) bench/run_all.py
