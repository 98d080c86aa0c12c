# Two commands set everything up on a fresh machine with Python 3.11 and pip:
#   make demo   create .venv, install the project, run the whole pipeline on the embedded demo
#   make test   create .venv if missing, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: demo test test-fast test-mutations learning-demo install clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no python3.11 or python3 on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

demo: $(STAMP)
	dvc repro
	@echo
	@echo "Done. Results:"
	@echo "  data/raw/                 the synthetic world (sources/, au/, truth/)"
	@echo "  reports/synth_aus.png     AUs x identities contact sheet"
	@echo "  data/face9m/shards/        Face9M WebDataset shards (reports/curation_samples.png)"
	@echo "  dvc metrics show          per-source curation counts (source .venv/bin/activate first)"

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)  # the unit tests only (a few minutes): what to run while editing
	$(BIN)/python -m pytest -m "not slow"

test-mutations: $(STAMP)  # the end-to-end learning tests (AU, FER) against three broken pipelines (~8 minutes)
	$(BIN)/python -m pytest --mutations tests/test_learning.py tests/test_fer.py -k "mutation or unseen or majority"

learning-demo: $(STAMP)  # MAE on 8,000 synthetic faces, FMAE on 3 BP4D folds, random init and IAT on fold 1 (~50 min on 2 cores)
	$(BIN)/python benchmarks/learning_demo.py

clean-demo:
	rm -rf data models dvclive
