# make demo: balance the embedded demo corpus.  make test: the test suite.
# Both create .venv and install the project (with its test extra) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,jax]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pipelines.balance

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_balance --rows 1000000

clean:
	rm -rf $(VENV) demo .pytest_cache
