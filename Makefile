# Two commands on a fresh machine: `make up` and `make test`. Both bootstrap what they
# need (venv, Maven build, system packages) and cache it under .venv, .stamps and ~/.m2,
# so a second run downloads nothing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
MVN := mvn -q -B -f hazelcast/pom.xml
JARS := hazelcast/target/ratelimit-processor.jar hazelcast/target/lib/hazelcast.jar hazelcast/target/lib/postgresql.jar \
  hazelcast/target/lib/jmx_prometheus_javaagent.jar
JAVA_SOURCES := $(shell find hazelcast/src/main -name '*.java') hazelcast/pom.xml

.PHONY: up down clean-data status test lint unit java-test bootstrap build system-deps bench bench-smoke bench-inprocess bench-e2e bench-policies bench-rls bench-create k6 clean help

help:
	@echo "make up      start 3 Hazelcast members, 3 replicas, nginx :9999, Envoy :10000 (bootstraps everything first)"
	@echo "make down    stop everything the stack or the tests started (the database keeps its data)"
	@echo "make clean-data  delete the local registry database (every client); after make down"
	@echo "make status  show what runs (Envoy, and the replicas' gRPC ports)"
	@echo "make test    lint, Java tests, then the whole Python suite on a real cluster"
	@echo "make bench   the benchmark report: every strategy in process, end to end and with k6"
	@echo "             (own stack; about 21-26 min on a shared 2-core machine; writes docs/benchmarks/)"
	@echo "make bench-smoke  the same in tiny sizes (about a minute), into .run/bench-smoke/"
	@echo "make bench-inprocess  the in-process part of make bench alone (own stack), into .run/bench-inprocess/"
	@echo "make bench-e2e  end-to-end benchmark alone, through nginx with wrk (own stack)"
	@echo "make bench-policies  three limits against one, in process and end to end (own stack), into .run/bench-policies/"
	@echo "make bench-rls  the gRPC rate limit service per replica, through Envoy, and against envoyproxy/ratelimit (own stack), into .run/bench-rls/"
	@echo "make bench-create  POST /bucket latency with the registry's PostgreSQL store on and off (own stack)"
	@echo "make k6      the original's k6 scenario, exact, for both window alignments (needs make up)"

bootstrap: $(STAMPS)/venv $(JARS) system-deps

$(STAMPS)/venv: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.11+"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,bench,stack]'
	@mkdir -p $(STAMPS) && touch $@

build: $(JARS)

$(JARS) &: $(JAVA_SOURCES)
	@command -v java >/dev/null || { echo "error: java not found: install OpenJDK 17+ (apt-get install openjdk-17-jdk-headless)"; exit 1; }
	@command -v mvn >/dev/null || { echo "error: mvn not found: install Maven (apt-get install maven)"; exit 1; }
	$(MVN) package -DskipTests
	@touch $(JARS)

# nginx and Prometheus serve the replicas and metrics, wrk loads the front door in the
# tests, PostgreSQL keeps the client registry; installed from Debian when missing.
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing with apt-get"; \
	    : "no system-wide cluster on 5432: the stack runs its own server under .run/"; \
	    mkdir -p /etc/postgresql-common/createcluster.d; \
	    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/ratelimit.conf; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "error: missing$$missing: run 'sudo apt-get install$$missing'"; exit 1; \
	  fi; \
	fi

up: bootstrap
	$(PY) -m stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m stack down; else echo "nothing was running (no venv yet)"; fi

clean-data:
	@if [ -x $(PY) ]; then $(PY) -m stack clean-data; else rm -rf .run/postgres; fi

status:
	@if [ -x $(PY) ]; then $(PY) -m stack status; else echo "nothing is running (no venv yet)"; fi

lint: $(STAMPS)/venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

java-test: $(JARS)
	$(MVN) test

unit: $(STAMPS)/venv
	$(PY) -m pytest -m unit -q

# The Python suite starts its own cluster (ports 5801-5803) and stops it at the end.
test: bootstrap lint java-test
	$(PY) -m pytest

# Its own stack on RATELIMIT_BENCH_BASE_PORT (default 5901), stopped at the end.
bench: bootstrap
	$(PY) -m benchmarks

bench-smoke: bootstrap
	$(PY) -m benchmarks --smoke

bench-inprocess: bootstrap
	$(PY) -m benchmarks --only inprocess --out .run/bench-inprocess

bench-e2e: bootstrap
	$(PY) -m benchmarks.endtoend

bench-policies: bootstrap
	$(PY) -m benchmarks.policies

bench-rls: bootstrap
	$(PY) -m benchmarks.rls

bench-create: bootstrap
	$(PY) -m benchmarks.tools.create

k6: $(STAMPS)/venv
	$(PY) -m benchmarks.load.k6

clean: down
	rm -rf $(VENV) $(STAMPS) hazelcast/target .run .mypy_cache .ruff_cache .pytest_cache .hypothesis
