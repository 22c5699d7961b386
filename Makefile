# Two commands: `make run` and `make test`. Everything else is a convenience.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# lint: ruff's checks and its formatter, mypy (configured in pyproject.toml, with the pydantic
# plugin) and the size limits of services/ (devtools/sizes.py). .ci/run runs it before the tests.
.PHONY: run run-prod test lint unit integration schemas bench bench-pace bench-sqlite bench-gc bench-consumer bench-bulk-lane bench-migration bench-catalog bench-bridge bench-embed bench-supervision bench-search bench-turns clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# run: the embedded default (Tansu, SQLite, the embedded search index). TONGYUAN_PROFILE=prod,
# or run-prod: the production profile (deploy/local/prod: Apache Kafka and PostgreSQL on this machine).
run: $(STAMP)
ifeq ($(TONGYUAN_PROFILE),prod)
	TONGYUAN_BIN=$(BIN)/tongyuan deploy/local/prod
else
	$(BIN)/tongyuan up
endif

run-prod: $(STAMP)
	TONGYUAN_BIN=$(BIN)/tongyuan deploy/local/prod

test: $(STAMP)
	$(BIN)/tongyuan schemas --check
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m devtools.sizes services

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

schemas: $(STAMP)
	$(BIN)/tongyuan schemas

bench: $(STAMP)
	$(BIN)/python -m bench.pipeline $(BENCH_ARGS)

bench-pace: $(STAMP)
	$(BIN)/python -m bench.pace $(BENCH_ARGS)

bench-sqlite: $(STAMP)
	$(BIN)/python -m bench.sqlite_writers $(BENCH_ARGS)

bench-gc: $(STAMP)
	$(BIN)/python -m bench.gc $(BENCH_ARGS)

bench-consumer: $(STAMP)
	$(BIN)/python -m bench.consumer $(BENCH_ARGS)

bench-bulk-lane: $(STAMP)
	$(BIN)/python -m bench.bulk_lane $(BENCH_ARGS)

bench-migration: $(STAMP)
	$(BIN)/python -m bench.migration $(BENCH_ARGS)

bench-catalog: $(STAMP)
	$(BIN)/python -m bench.catalog_api $(BENCH_ARGS)

bench-bridge: $(STAMP)
	$(BIN)/python -m bench.bridge $(BENCH_ARGS)

bench-embed: $(STAMP)
	$(BIN)/python -m bench.embed $(BENCH_ARGS)

bench-supervision: $(STAMP)
	$(BIN)/python -m bench.supervision $(BENCH_ARGS)

bench-turns: $(STAMP)
	$(BIN)/python -m bench.turns $(BENCH_ARGS)

bench-search: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.search $(BENCH_ARGS)

clean:
	rm -rf var .pytest_cache
