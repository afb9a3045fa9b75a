# Two commands set everything up on a fresh machine: `make test` (the whole suite) and `make demo`.
# Every pip call runs with PIP_CONSTRAINT=constraints.txt, which pins the build backend as well as the packages.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
# pip's own notice about newer releases is noise on machines without internet
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install test test-fast fuzz lint format bench demo constraints clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==26.3
	$(PY) -m pip install --quiet -e . -r requirements-test.txt
	touch $@

## the whole suite, end-to-end tests included
test: install
	$(PY) -m pytest

## pure and in-process tests only (skips tests marked slow)
test-fast: install
	$(PY) -m pytest -m "not slow"

## property-based fuzzing of every response parser and fetcher, 5000 examples per hook (the normal suite runs 200);
## CARBON_FUZZ_EXAMPLES=... to change
CARBON_FUZZ_EXAMPLES ?= 5000
fuzz: install
	CARBON_FUZZ_EXAMPLES=$(CARBON_FUZZ_EXAMPLES) $(PY) -m pytest -m fuzz -q tests/hooks/test_fuzz.py

## formatting and lint rules (pyproject.toml [tool.ruff]); CI runs this before the tests
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

## apply the formatter and the safe lint fixes
format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## optimizer speed against brute-force and pandas references measured in the same run, plus import cost
bench: install
	$(PY) benchmarks/bench_windows.py

## re-resolve the pins after changing dependencies (needs the package registry)
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	PIP_CONSTRAINT= .venv-constraints/bin/pip install --quiet pip==26.3
	PIP_CONSTRAINT= .venv-constraints/bin/pip install --quiet -c ../shared/reference/airflow-3.3.2-resolved.txt . -r requirements-test.txt
	{ sed -n '1,3p' constraints.txt; .venv-constraints/bin/pip freeze --exclude airflow-provider-carbon; \
	  grep '^flit_core==' constraints.txt; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-constraints

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info

## the nightly DAG in real Airflow against the offline simulator: optimised plan, then the 02:00 fallback
demo: install
	$(PY) demo/run_demo.py
