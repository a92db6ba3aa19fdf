# bc-sync developer commands. Everything runs inside .venv, created on first use.
#
# Installs come from the hashed lock files, never from "newest on the day":
#   requirements-dev.lock  runtime + dev + validators (make install, make test, .ci/run)
#   requirements.lock      runtime only (deploy/Dockerfile), the same versions
# Both are compiled from pyproject.toml by `make lock` (uv pip compile, universal, hashed).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
LOCK := requirements-dev.lock
RUNTIME_LOCK := requirements.lock
LOWEST := .venv-lowest
NODE_DIR := tools/validators
NODE_STAMP := $(NODE_DIR)/node_modules/.installed
# pytest, with its exit 5 (no test collected or all deselected) turned into a failure that
# says so: a run that tests nothing must not look like a pass or an unexplained error.
PYTEST_RUN = { $(1) || { rc=$$?; if [ $$rc -eq 5 ]; then \
	echo "pytest ran no test (exit 5): the suite is empty or everything was deselected" >&2; fi; \
	exit $$rc; }; }
# One set of flags for make lock and make lock-check, so the check recompiles exactly.
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command "make lock"

.PHONY: install test test-lowest lint format schemas deploy-rules demo bench chaos chaos-cluster \
	emulator vendor clean lock lock-upgrade lock-check validate validators

# uv itself, at the version the lock pins: the bootstrap of everything below.
$(UV):
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q "$$(grep -o '^uv==[0-9.]*' $(LOCK))"

# Exact: `uv pip sync` also removes what the lock no longer lists. Nothing to do (and no
# network) while the stamp is newer than the lock and pyproject.toml.
$(STAMP): $(LOCK) pyproject.toml | $(UV)
	$(UV) pip sync -q -p $(BIN)/python --require-hashes $(LOCK)
	$(UV) pip install -q -p $(BIN)/python --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

## make lock: re-resolve after editing dependencies in pyproject.toml (keeps every other pin)
lock: | $(UV)
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o $(LOCK)
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -c $(LOCK) -o $(RUNTIME_LOCK)

## make lock-upgrade: move every pin to the newest version pyproject.toml allows
lock-upgrade: | $(UV)
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_FLAGS) --upgrade -o $(LOCK)
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) --upgrade -c $(LOCK) -o $(RUNTIME_LOCK)

## make lock-check: the lock files are what `make lock` makes of pyproject.toml now
lock-check: | $(UV)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	cp pyproject.toml README.md $(LOCK) $(RUNTIME_LOCK) "$$tmp/" && cd "$$tmp" && \
	$(CURDIR)/$(UV) pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o $(LOCK) && \
	$(CURDIR)/$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -c $(LOCK) -o $(RUNTIME_LOCK) && \
	diff -u $(CURDIR)/$(LOCK) $(LOCK) && diff -u $(CURDIR)/$(RUNTIME_LOCK) $(RUNTIME_LOCK) && \
	echo "lock files match pyproject.toml ($$($(CURDIR)/$(UV) --version))" || \
	{ echo "lock files are stale: run 'make lock' and commit requirements*.lock" >&2; exit 1; }

## make validators: the Node validators (AsyncAPI parser, KEDA / Prometheus Operator CRD
## schemas) into tools/validators/node_modules, exactly as package-lock.json pins them
$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is not installed: the Node validators will be skipped"; exit 0; }
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

validators: $(NODE_STAMP)

## make validate: every third-party validator over the contract, deploy and packaging files
## (each printed with its version; one that cannot run here is skipped with the reason)
validate: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m tools.validate

## make test: the whole suite (needs RabbitMQ: AMQP_URL, else localhost:5672, else Docker)
test: $(STAMP)
	@$(call PYTEST_RUN,$(BIN)/pytest -q)

## make test-lowest: the unit and deploy tests on the lowest version of every direct dependency
## (uv --resolution lowest-direct) in a separate venv; proves the floors in pyproject.toml
test-lowest: | $(UV)
	@test -x $(LOWEST)/bin/python || $(UV) venv -q -p $(PY) $(LOWEST)
	rm -f $(LOWEST)/requirements.txt
	$(UV) pip compile -q pyproject.toml --extra dev --resolution lowest-direct \
		--python-version 3.11 -o $(LOWEST)/requirements.txt
	$(UV) pip sync -q -p $(LOWEST)/bin/python $(LOWEST)/requirements.txt
	$(UV) pip install -q -p $(LOWEST)/bin/python --no-deps --no-build-isolation -e .
	@grep -E '^(aio-pika|aiohttp|msal|pydantic|pydantic-settings|tenacity|structlog|sqlalchemy|aiosqlite|asyncpg|aiosmtplib|cryptography|prometheus-client|requests)==' \
		$(LOWEST)/requirements.txt | tr '\n' ' ' && echo
	@$(call PYTEST_RUN,BC_SYNC_TEST_LOWEST=1 $(LOWEST)/bin/pytest -q -p no:cacheprovider tests/unit tests/deploy)

## make lint: ruff (lint + format check), mypy --strict, and the import contracts of
## DESIGN §2 (import-linter, [tool.importlinter] in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check worker tests tools
	$(BIN)/ruff format --check worker tests tools
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format worker tests tools
	$(BIN)/ruff check --fix worker tests tools

## make schemas: regenerate schemas/ from worker/events (events, AsyncAPI) and worker/api
## (the admin API's OpenAPI document)
schemas: $(STAMP)
	$(BIN)/python -m worker.events.schemas
	$(BIN)/python -m worker.api.contract

## make deploy-rules: regenerate deploy/kubernetes/monitoring/prometheusrule.yaml from alerts.yml
deploy-rules: $(STAMP)
	$(BIN)/python -m tools.prometheusrule

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

## make chaos-cluster: the soak on 3 RabbitMQ nodes started here, stopping the exports leader
chaos-cluster: $(STAMP)
	$(BIN)/python -m tests.chaos.cluster

## make emulator: run the BC emulator alone
emulator: $(STAMP)
	$(BIN)/python -m tests.emulator --port 8443 --seed demo

clean:
	rm -rf $(VENV) $(LOWEST) $(NODE_DIR)/node_modules .mypy_cache .ruff_cache .pytest_cache bc-sync.db outbox \
		bench-report.md
