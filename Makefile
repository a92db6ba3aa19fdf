# bc-sync developer commands. Everything runs inside .venv, created on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint format schemas demo bench chaos emulator vendor clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## make test: the whole suite (needs RabbitMQ: AMQP_URL, else localhost:5672, else Docker)
test: $(STAMP)
	$(BIN)/pytest -q

## make lint: ruff (lint + format check), mypy --strict, and the import contracts of
## DESIGN §2 (import-linter, [tool.importlinter] in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check worker tests
	$(BIN)/ruff format --check worker tests
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format worker tests
	$(BIN)/ruff check --fix worker tests

## make schemas: regenerate schemas/ from worker/events
schemas: $(STAMP)
	$(BIN)/python -m worker.events.schemas

## make demo [KEEP=1]: the product end to end against the BC emulator; KEEP=1 keeps it running
## (the operations console at the printed URL) until Ctrl-C
demo: $(STAMP)
	$(BIN)/python -m tests.demo $(if $(KEEP),--keep,)

## make vendor: fetch htmx from the npm registry and copy its minified file into the console's
## static files (checked in: nothing is fetched at run time). HTMX_VERSION pins the release.
HTMX_VERSION ?= 2.0.8
vendor:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd "$$tmp" && npm pack --silent htmx.org@$(HTMX_VERSION) >/dev/null && tar -xzf htmx.org-$(HTMX_VERSION).tgz) && \
	  cp "$$tmp/package/dist/htmx.min.js" worker/console/static/htmx.min.js && \
	  echo "worker/console/static/htmx.min.js: htmx $(HTMX_VERSION) ($$(wc -c < worker/console/static/htmx.min.js) bytes)"

## make bench [QUICK=1]: performance scenarios, report in bench-report.md
bench: $(STAMP)
	$(BIN)/python -m tests.bench $(if $(QUICK),--quick,)

## make chaos: the full-size soak with faults (the CI runs a reduced size in make test)
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos

## make emulator: run the BC emulator alone
emulator: $(STAMP)
	$(BIN)/python -m tests.emulator --port 8443 --seed demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bc-sync.db outbox bench-report.md
