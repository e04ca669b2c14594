# The two commands of the README. Both create .venv when it is missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[all]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m nb2flow.examples.demo

# lint: style, types (mypy, configured in pyproject.toml) and the import contracts between
# the packages (import-linter, [tool.importlinter] in pyproject.toml)
test: lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check nb2flow tests benchmarks
	$(BIN)/ruff format --check nb2flow tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format:
	$(BIN)/ruff format nb2flow tests benchmarks
	$(BIN)/ruff check --fix nb2flow tests benchmarks

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
