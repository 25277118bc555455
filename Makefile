# Patron: `make run` serves on SQLite with demo data; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Test processes; one per core on the 2-core machines this runs on.
TEST_WORKERS ?= 2
export PATRON_DEBUG ?= 1

.PHONY: setup upgrade-deps run test test-sqlite test-postgres e2e lint format bench migrations clean

# Installs the versions in constraints.txt: the ones the suite last passed with, so a clean
# clone installs what was tested rather than whatever was released since.
$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# Newest releases pyproject.toml allows, pinned into constraints.txt; run `make test` (and
# the PostgreSQL run) before committing the new pins.
upgrade-deps: setup
	$(BIN)/python -m pip install --quiet --upgrade -e '.[dev]'
	$(BIN)/python -m pip freeze --exclude-editable > constraints.txt

setup: $(BIN)/.installed

run: setup
	$(BIN)/patron migrate --noinput
	$(BIN)/patron demo --if-empty
	$(BIN)/patron run --port $(PORT)

test: test-sqlite
	@if [ -n "$$PATRON_TEST_DATABASE_URL" ]; then \
		$(MAKE) --no-print-directory test-postgres; \
	else \
		echo "PostgreSQL run not asked for: set PATRON_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/patron to run it."; \
	fi

test-sqlite: setup
	PATRON_TESTING=1 PATRON_TEST_DATABASE_URL= $(BIN)/pytest -m "not e2e" -q -n $(TEST_WORKERS)

test-postgres: setup
	PATRON_TESTING=1 $(BIN)/pytest -m "not e2e" -q -n $(TEST_WORKERS) --create-db

e2e: setup
	@command -v /usr/bin/chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	@# CJK glyphs, so the zh-Hans screenshots in var/e2e/ are readable
	@fc-list :lang=zh 2>/dev/null | grep -q . || (apt-get update -qq && apt-get install -y -qq fonts-wqy-microhei >/dev/null)
	@mkdir -p var/e2e
	PATRON_TESTING=1 PATRON_TEST_DATABASE_URL= $(BIN)/pytest -m e2e -q tests/e2e

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PATRON_TESTING=1 $(BIN)/python manage.py makemigrations --check --dry-run

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# make bench: every benchmark, results in docs/benchmarks.md. BENCH=members (issue 2:
# sign-in, registration, lookup) or BENCH=loyalty (issue 3: order events, tier evaluation,
# points expiry) measures one part again and keeps the other's last figures.
BENCH ?= all
bench: setup
	PATRON_TESTING=1 $(BIN)/python -m benchmarks.run --bench $(BENCH)

clean:
	rm -rf $(VENV) var/patron.sqlite3* var/outbox
