# One command to set up and run, one to test. Python 3.11, Debian 12 (or similar), CPU is enough.
PYTHON ?= python3
VENV ?= .venv
DATA_DIR ?=
ARGS ?=
# pytest-xdist workers for `make test` (tests/conftest.py says how tests are shared out); 0: none
TEST_WORKERS ?= 2
STAMP := $(VENV)/.installed

.PHONY: setup run test lint clean

# venv + the locked install (TFX 1.16 declares Python <3.11 but works on 3.11; see README).
$(STAMP): setup.py requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	PIP_IGNORE_REQUIRES_PYTHON=1 $(VENV)/bin/pip install --quiet --disable-pip-version-check \
		-c requirements/constraints.txt -e ".[test]"
	$(VENV)/bin/pip check
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/python local_runner.py $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(ARGS)

test: $(STAMP) lint
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf outputs .pytest_cache
