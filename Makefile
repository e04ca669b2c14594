# The two commands of the README. Both create .venv when it is missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean-venv labextension corpus-report

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[all]'
	# An editable install skips the package's data files (a wheel carries them): link the
	# prebuilt JupyterLab / Notebook 7 extension (committed in nb2flow/labextension) and
	# enable the server extension, as a wheel install would.
	rm -rf $(VENV)/share/jupyter/labextensions/nb2flow
	mkdir -p $(VENV)/share/jupyter/labextensions $(VENV)/etc/jupyter/jupyter_server_config.d
	ln -s $(CURDIR)/nb2flow/labextension $(VENV)/share/jupyter/labextensions/nb2flow
	cp jupyter-config/jupyter_server_config.d/nb2flow.json $(VENV)/etc/jupyter/jupyter_server_config.d/
	touch $(STAMP)

# Rebuild the extension after changing labextension/ (needs Node.js; the result is committed)
labextension: $(STAMP)
	$(BIN)/python labextension/build.py

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

# The corpus report (docs/converter.md, slow: not part of `test`): the corpus notebooks'
# libraries (the `corpus` extra: seaborn and the scientific stack) come first.
# Options go in ARGS, e.g. make corpus-report ARGS="--runners threads --only mpl-"
CORPUS_STAMP := $(VENV)/.corpus-installed
$(CORPUS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[corpus]'
	touch $(CORPUS_STAMP)

corpus-report: $(CORPUS_STAMP)
	$(BIN)/python benchmarks/corpus_report.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
