# Two commands set everything up on a fresh machine with Python 3.11 and pip:
#   make demo   create .venv, install the project, run the demo's AU and FER stages on the embedded
#               synthetic world (its learning configuration, params.yaml: ~85 minutes on 2 CPU cores)
#   make test   create .venv if missing, run the test suite
# make compare then runs the rest of `dvc repro`: FSFM pretraining and the few-shot comparison (~75 minutes more).
# make demo-fast runs every stage in minutes (the params-fast.yaml overlay), learning nothing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: demo compare demo-fast summary test test-fast test-mutations install clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no python3.11 or python3 on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,yunet]'
	@touch $@

demo: $(STAMP)  # the AU and FER stages: everything upstream of evaluate and evaluate_fer
	dvc repro evaluate evaluate_fer
	@$(MAKE) --no-print-directory summary

compare: $(STAMP)  # the rest of the pipeline: pretrain_compare (FSFM), fewshot, fewshot_report
	dvc repro
	@echo
	@echo "Done. The few-shot comparison: reports/fewshot.md, plots/fewshot/auc_by_subjects.png, metrics/fewshot.json"

demo-fast: $(STAMP)  # every stage on a small world (~10 minutes): the params-fast.yaml overlay as a DVC experiment
	fmae overlay params-fast.yaml
	@$(MAKE) --no-print-directory summary
	@echo "  (params.yaml now holds the fast values: git checkout params.yaml, or dvc exp apply, to go back)"

summary:
	@echo
	@echo "Done. Results (source .venv/bin/activate first):"
	@echo "  fmae results              test F1 / AUC of FMAE, FMAE-IAT and random init; the three identity probes"
	@echo "  dvc metrics show          every metric (metrics/au.json, fer.json, pretrain.json, curation.json)"
	@echo "  reports/au.md             the paper's tables with this run's numbers; plots/evaluate/ its figures"
	@echo "  data/raw/                 the synthetic world (reports/synth_aus.png: AUs x identities)"

test: $(STAMP)  # two workers, one module each at a time (the `dvc repro` module ~12 minutes on one, the rest on the other)
	$(BIN)/python -m pytest -n 2 --dist loadscope --no-loadscope-reorder

test-fast: $(STAMP)  # the unit tests only (a few minutes): what to run while editing
	$(BIN)/python -m pytest -m "not slow"

test-mutations: $(STAMP)  # the end-to-end learning tests (AU, FER, CLP) against four broken pipelines (~12 minutes)
	$(BIN)/python -m pytest --mutations tests/test_learning.py tests/test_fer.py tests/test_clp_learning.py -k "mutation or unseen or majority"


clean-demo:
	rm -rf data models dvclive
