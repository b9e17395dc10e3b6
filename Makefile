# The two commands: `make demo` runs the example DAG against the local emulator,
# `make test` runs the whole test suite. Both create .venv and install the project first.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: demo test deploy-test clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python scripts/demo.py

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

# PROFILE=local (LocalExecutor, one triggerer, Chromium) or PROFILE=celery (CeleryExecutor, Redis,
# two workers, two triggerers, failover); see docs/deploying.md.
PROFILE ?= local
deploy-test: $(STAMP)
	$(VENV)/bin/python scripts/deploy_test.py --profile $(PROFILE)

clean:
	rm -rf $(VENV) .demo
