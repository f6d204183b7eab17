# The two entry points of the README: `make run` and `make test`.
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck pytest bench clean

run:  ## install into .venv and run DeployMate on the embedded SQLite default
	bash scripts/ensure-venv.sh
	$(VENV)/bin/deploymate serve --host $(HOST) --port $(PORT)

test:  ## install everything the tests need (as root) and run lint, types and the whole suite
	bash scripts/install-test-deps.sh
	bash scripts/ensure-venv.sh dev
	$(MAKE) lint typecheck pytest

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

pytest:  ## the slowest tests are listed at the end: the suite must stay well under 20 minutes
	$(VENV)/bin/python -m pytest --durations=20 $(PYTEST_ARGS)

bench:  ## (root) redeploy vs bare docker swap, zero-downtime load, app fan-out on lab hosts; API latency
	$(VENV)/bin/python -m benchmarks.deploy_latency
	$(VENV)/bin/python -m benchmarks.api_latency
	$(VENV)/bin/python -m benchmarks.zero_downtime
	$(VENV)/bin/python -m benchmarks.app_fanout
	$(VENV)/bin/python -m benchmarks.shipping

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
