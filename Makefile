# bc-sync developer commands. Everything runs inside .venv, created on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint format schemas demo bench chaos emulator clean

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

## make schemas: regenerate schemas/ from worker/events (events, AsyncAPI) and worker/api
## (the admin API's OpenAPI document)
schemas: $(STAMP)
	$(BIN)/python -m worker.events.schemas
	$(BIN)/python -m worker.api.contract

## make demo: the product end to end against the BC emulator
demo: $(STAMP)
	$(BIN)/python -m tests.demo

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
