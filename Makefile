# Two commands on a fresh machine: `make demo` (set up + run the main job), `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt
export HF_HUB_OFFLINE := 1

.PHONY: install dev demo test lint bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

lint: dev
	$(BIN)/ruff check anima tests benchmarks scripts

test: lint
	$(BIN)/python -m pytest

bench: dev
	$(BIN)/python benchmarks/watermark.py

clean:
	rm -rf .demo .pytest_cache .ruff_cache
