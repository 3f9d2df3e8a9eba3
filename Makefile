# One gate: set up, generate, lint, test. `make help` lists targets.
CACHE ?= $(or $(INFERSIGHT_CACHE),$(HOME)/.cache/infersight)
VENV ?= $(or $(INFERSIGHT_VENV),$(CACHE)/venv)
PY := $(VENV)/bin/python
export INFERSIGHT_CACHE := $(CACHE)
export INFERSIGHT_VENV := $(VENV)

.PHONY: help setup setup-tests collector jaeger test test-e2e test-gpu lint generate check-generated demo bench

help:
	@echo "make demo       set up, then run the example server under load with the live view"
	@echo "                (options: make demo ARGS='--fault-at 20 --fault slow_model')"
	@echo "make test       set up, then run the whole test suite (what CI runs)"
	@echo "make bench      run the benchmarks and write docs/benchmarks.md"
	@echo "make generate   regenerate rules, dashboards and docs from code"
	@echo "make lint       ruff check and format, mypy strict, promtool check rules"
	@echo "make collector  build our collector (cached); make jaeger: build Jaeger v2 (cached)"

setup:
	@bash tools/setup.sh

# The test suite also needs the envs of its framework, Triton and newest-versions tests.
setup-tests:
	@INFERSIGHT_TEST_ENVS=1 bash tools/setup.sh

collector:
	@bash tools/build-collector.sh

jaeger:
	@bash tools/build-jaeger.sh

test: setup-tests
	$(PY) -m pytest

lint:
	$(VENV)/bin/ruff check sdk tests benchmarks examples tools grafana-dashboards
	$(VENV)/bin/ruff format --check sdk tests benchmarks examples tools grafana-dashboards
	$(VENV)/bin/mypy
	promtool check rules prometheus-rules/*.rules.yaml

demo: setup
	$(PY) tools/demo.py $(ARGS)

bench: setup
	$(PY) benchmarks/run.py

test-e2e: setup-tests
	$(PY) -m pytest tests/e2e -q -s

test-gpu: setup
	$(PY) -m pytest tests/gpu -m gpu -q -rs

check-generated:
	$(PY) tools/gen_rules.py --check
	$(PY) grafana-dashboards/generate.py --check
	$(PY) tools/gen_metrics_doc.py --check

generate:
	PATH=$(VENV)/bin:$$PATH sh examples/grpc_server/gen_proto.sh
	$(PY) tools/gen_rules.py
	$(PY) grafana-dashboards/generate.py
	$(PY) tools/gen_metrics_doc.py
