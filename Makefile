# Two entry points for a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install demo test lint bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: install
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
