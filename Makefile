# Set-up and entry points. `make demo` and `make test` build .venv/ first (through `make install`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast demo clean-venv

install: $(STAMP)

# Rebuilt when setup.py changes; reused otherwise. torch is installed first from the pinned CPU wheel
# so no dependency can pull a CUDA build.
$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -c "import fairseq_kd, fairseq; print('fairseq', fairseq.__version__, 'ready')"
	touch $(STAMP)

# the whole suite on both cores (pytest-xdist; see tests/conftest.py for how the work is split)
test: install
	$(PY) -m pytest -q -ra -n 2 --dist loadgroup --durations 25 tests

# without the recipes' smoke runs
test-fast: install
	$(PY) -m pytest -q -ra -n 2 --dist loadgroup -m "not slow" tests

demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash recipes/demo/run.sh

clean-venv:
	rm -rf $(VENV)
