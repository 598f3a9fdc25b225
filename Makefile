# Two entry points for a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install demo test lint bench

# The demo needs only the package; the tests add their extra (pytest, transformers, nvim, ...).
# --no-compile: modules are byte-compiled when first imported, not all of them at install (a
# fresh `make test` installs in 44 s instead of 75 s here).
$(BIN)/.installed-app: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile -e .
	touch $@

# One pip run for the package and its test extra (two runs resolve everything twice).
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile -e '.[test]'
	touch $@ $(BIN)/.installed-app

install: $(BIN)/.installed

demo: $(BIN)/.installed-app
	$(BIN)/glm-lsp demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check glm_lsp tests benchmarks

# Two workers, whole files each (a file's module fixtures stay in one worker); TEST_WORKERS=0
# runs the suite in this process.
TEST_WORKERS ?= 2

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: install
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m benchmarks.run
