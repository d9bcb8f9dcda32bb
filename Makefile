# reportguard — `make help` lists the targets. Everything runs inside .venv/ at the repo root.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RG := $(BIN)/reportguard

.DEFAULT_GOAL := help

## help: list the targets
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## //' | awk -F': ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e ".[serve,train,review,dev]"
	touch $(STAMP)

## setup: create .venv/ and install everything (torch CPU 2.13.0 pinned); gives .venv/bin/reportguard
setup: $(STAMP)

## test: the default test suite (installs what it needs first; slow tests excluded)
test: $(STAMP)
	$(BIN)/python -m pytest --doctest-modules src/core tests

## test-all: every test, slow ones included
test-all: $(STAMP)
	$(BIN)/python -m pytest --doctest-modules src/core tests -m ""

## corpus: rebuild data/labelled/ from data/raw/batches/ and validate it
corpus: $(STAMP)
	$(RG) data build
	$(RG) data validate

## validate: check the labelled corpus (sizes, mix, duplicates, leakage)
validate: $(STAMP)
	$(RG) data validate

## unlabelled: gather unlabelled Chinese text for masked-LM pretraining into data/unlabelled/
unlabelled: $(STAMP)
	$(RG) data unlabelled

## baselines: keyword and TF-IDF baselines -> reports/baselines.md
baselines: $(STAMP)
	$(RG) baselines

## clean: remove the virtual environment and caches (keeps data and models)
clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info

.PHONY: help setup test test-all corpus validate unlabelled baselines clean
