# Two commands do all the set-up on a fresh machine:
#   make demo   installs crossrep into .venv (first time only) and runs the demo job end to end, locally
#   make test   installs crossrep into .venv (first time only) and runs the test suite
VENV ?= .venv
PYTHON ?= python3

.PHONY: demo test test-fast install

$(VENV)/.installed: pyproject.toml .ci/install
	VENV=$(VENV) PYTHON=$(PYTHON) bash .ci/install
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/crossrep run demo

test: install
	$(VENV)/bin/python -m pytest -q

test-fast: install  # the unit and model tiers, for the edit loop
	$(VENV)/bin/python -m pytest -q -m "not (e2e or slurm or browser)"
