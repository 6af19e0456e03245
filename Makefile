# Set-up and entry points. `make demo` and `make test` build .venv/ first (through `make install`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo clean-venv

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

test: install
	$(PY) -m pytest -q -ra tests

demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash recipes/demo/run.sh

clean-venv:
	rm -rf $(VENV)
