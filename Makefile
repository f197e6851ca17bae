# Two commands for a fresh machine:  make demo  and  make test.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# torch, the CPU build. PyPI's Linux torch is the CUDA build (several GB of nvidia-* wheels), so on
# Linux we ask for the +cpu build from PyTorch's CPU wheel index. A CPU wheel that pip already sees
# without any network (its find-links, a local index) is tried first, so a machine that cannot reach
# PyTorch's host never waits on it. Override either: make TORCH_INDEX=<a mirror of that index>, or
# make TORCH=torch==2.13.0 (macOS and Windows: PyPI's build is already the CPU one).
TORCH_VERSION ?= 2.13.0
ifeq ($(shell uname -s),Linux)
TORCH ?= torch==$(TORCH_VERSION)+cpu
else
TORCH ?= torch==$(TORCH_VERSION)
endif
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test test-fast bench lint docs clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch first: otherwise sentence-transformers pulls several GB of CUDA.
	$(PIP) install -q --no-index --no-deps "$(TORCH)" 2>/dev/null \
	  || { echo "no local wheel of $(TORCH): installing it from $(TORCH_INDEX)"; \
	       $(PIP) install -q "$(TORCH)" --index-url "$(TORCH_INDEX)"; }
	$(PIP) install -q "$(TORCH)"  # torch's own dependencies, from the usual index
	$(PIP) install -q -e ".[text]"
	touch $@

$(VENV)/.full: $(VENV)/.base
	$(PIP) install -q -e ".[text,eval,plot,bench,dask,views,hybrid,fast,compressed,dev,lint,docs]"
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/softdb demo

test: $(VENV)/.full
	$(PY) -m pytest -q

# The development loop: everything but the tests marked slow (the real model, subprocess
# crash and benchmark runs, the large property suites). CI and `make test` run them all.
test-fast: $(VENV)/.full
	$(PY) -m pytest -q -m "not slow"

# ruff (rules and format), mypy (strict defs) and import-linter (the layers, no circle): all in pyproject.toml.
lint: $(VENV)/.full
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The docs site (mkdocs.yml, docs/): --strict turns a broken reference into a failure.
docs: $(VENV)/.full
	$(VENV)/bin/mkdocs build --strict --site-dir site

bench: $(VENV)/.full
	$(PY) benchmarks/bench_lookup.py

clean:
	rm -rf $(VENV) build site *.egg-info
