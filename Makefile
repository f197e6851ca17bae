# Two commands for a fresh machine:  make demo  and  make test.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test bench clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch first: otherwise sentence-transformers pulls several GB of CUDA.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[text]"
	touch $@

$(VENV)/.full: $(VENV)/.base
	$(PIP) install -q -e ".[text,eval,plot,bench,dask,views,dev]"
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/softdb demo

test: $(VENV)/.full
	$(PY) -m pytest -q

bench: $(VENV)/.full
	$(PY) benchmarks/bench_lookup.py

clean:
	rm -rf $(VENV) build *.egg-info
