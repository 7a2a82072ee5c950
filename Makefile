# Two commands for users: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := src tests benchmarks scripts

.PHONY: install demo up test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e clients/popcorn_studio
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/popcorn demo --serve

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite runs on the embedded defaults, then again on the servers named by
# POPCORN_TEST_DATABASE_URL / POPCORN_TEST_REDIS_URL when they are set.
pytest: $(STAMP)
	env -u POPCORN_TEST_DATABASE_URL -u POPCORN_TEST_REDIS_URL $(BIN)/pytest -q
	@if [ -n "$$POPCORN_TEST_DATABASE_URL$$POPCORN_TEST_REDIS_URL" ]; then \
		echo "== again on $$POPCORN_TEST_DATABASE_URL and $$POPCORN_TEST_REDIS_URL =="; \
		$(BIN)/pytest -q -m "not embedded_only"; \
	fi

# Benchmarks that need the servers work in a schema (and a Redis database) of their own.
bench: export POPCORN_BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
bench: export POPCORN_BENCH_REDIS_URL ?= redis://127.0.0.1:6379/15
bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done
	$(BIN)/python benchmarks/collect.py

clean:
	rm -rf $(VENV) .popcorn .mypy_cache .ruff_cache .pytest_cache
