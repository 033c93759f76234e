# DMS Access Portal — the commands a person types.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Tests run against real Postgres and Redis (both local on the dev/CI machines).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/portal
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
# The benchmarks drop and re-create this database at every run (its name must end in "bench").
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/portal_bench
# full: the figures of the README; tiny: the smoke run of the test suite.
BENCH_SIZE ?= full

.PHONY: install run test test-slow screenshots bench lint clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python manage.py quickstart

test: install
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_REDIS_URL) $(BIN)/pytest $(PYTEST_ARGS)

test-slow: install
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_REDIS_URL) $(BIN)/pytest -m slow $(PYTEST_ARGS)

# The README's pictures (docs/screenshots/), taken by the browser tests that
# walk through those pages; commit them when they change.
screenshots: install
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_REDIS_URL) PORTAL_DOCS_SCREENSHOTS=1 \
		$(BIN)/pytest -q tests/e2e/test_first_look.py tests/e2e/test_journeys.py $(PYTEST_ARGS)

bench: install
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) CELERY_BROKER_URL=$(TEST_REDIS_URL) BENCH_SIZE=$(BENCH_SIZE) $(BIN)/python -m bench

clean:
	rm -rf $(VENV) var test-output .pytest_cache .hypothesis
