# ACRM pipelines — the two commands a user needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
DEMO_CUSTOMERS ?= 20000
DEMO_AS_OF ?= 2026-11-20

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: setup system-deps demo test lint dbt-parse ui clean

setup: $(STAMP)

# Re-run only when the dependencies or the dbt project change; otherwise `make setup` is instant.
$(STAMP): pyproject.toml dagster.yaml $(shell find dbt_project -name '*.sql' -o -name '*.yml' | grep -v target)
	@$(PYTHON) -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version" || { echo "Python 3.11 is required" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,spark]'
	$(MAKE) --no-print-directory dbt-parse
	mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	touch $(STAMP)

# The dbt manifest must exist before Dagster loads the definitions.
dbt-parse:
	cd dbt_project && ACRM_DUCKDB_PATH=$${ACRM_DUCKDB_PATH:-$(CURDIR)/data/acrm.duckdb} \
		../$(BIN)/dbt parse --quiet --profiles-dir . --project-dir .

demo: setup
	@start=$$(date +%s); \
	$(BIN)/acrm demo --customers $(DEMO_CUSTOMERS) --seed 42 && \
	$(BIN)/acrm run --as-of $(DEMO_AS_OF) && \
	echo "make demo took $$(( $$(date +%s) - start )) s"

# Debian packages the tests need, installed only when missing (a no-op otherwise): the PostgreSQL
# server that tests/pg_server.py starts as a throwaway instance for the postgres destination's tests,
# the Chromium that tests/test_ui.py drives through Playwright (its own browser downloads are not used),
# and a Java runtime for the local Spark session of tests/test_engine_spark.py (Debian's default JRE:
# 17 on bookworm, 21 on trixie; Spark 4.1 runs on both).
system-deps:
	@missing=""; \
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing="$$missing postgresql"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v java >/dev/null || missing="$$missing default-jre-headless"; \
	if [ -z "$$missing" ]; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "system-deps: installing Debian packages for the tests:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		mkdir -p /usr/share/man/man1; \
		apt-get update && apt-get install -y --no-install-recommends $$missing; \
	else \
		echo "system-deps: the tests need Debian packages:$$missing" >&2; \
		echo "  (postgresql: a server with initdb under /usr/lib/postgresql/*/bin; chromium: /usr/bin/chromium;" >&2; \
		echo "   default-jre-headless: java 17 or 21 for Spark)" >&2; \
		echo "  Install them as root: apt-get update && apt-get install -y --no-install-recommends$$missing" >&2; \
		echo "  (or run 'sudo make system-deps')." >&2; \
		exit 1; \
	fi

test: system-deps setup
	$(BIN)/ruff check .
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs
	$(BIN)/pytest -q -n auto --dist loadfile --durations=25

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

ui: setup
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

clean:
	rm -rf $(VENV) data .dagster_home dbt_project/target dbt_project/logs
