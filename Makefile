# Marketlog: `make run` starts everything, `make test` tests everything.
# Every target installs what it needs on a fresh Debian machine: the venv and Python packages
# (PyPI), the PostgreSQL server (Debian), the Kafka broker jars (Maven Central).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
KAFKA_LIBS := .cache/kafka/libs

.PHONY: help deps postgres-server chromium chaos run up down status cluster cluster-down cluster-status test test-unit test-integration test-e2e simulate fuzz-http bench scale lint format clean distclean

help:
	@echo "make run    start Kafka, PostgreSQL and every service in the foreground (Ctrl-C stops)"
	@echo "make up     the same in the background, returns when healthy; make down stops it"
	@echo "make cluster  the same on three Kafka brokers (replication 3, SASL/SCRAM, ACLs), in the"
	@echo "            background; make cluster-down stops it (docs/cluster.md)"
	@echo "make test   unit, integration and end-to-end tests against real Kafka and PostgreSQL"
	@echo "make simulate  seeded whole-exchange simulations in memory (SEEDS=5000, SEED=n: one)"
	@echo "make bench  benchmarks; results under bench/results/"
	@echo "make scale  throughput against 1, 2, 3 instances per processor on three brokers"
	@echo "make chaos  faults under load on every surface (kill -9, pause, broker restart); results in"
	@echo "            bench/results/; make chaos CLUSTER=1: on three brokers, one of them killed"
	@echo "make fuzz-http  schemathesis (all checks and phases) against the stack make up runs"
	@echo "make clean  stop everything and drop all state (.state/)"

deps: $(VENV)/.installed $(KAFKA_LIBS)/.complete postgres-server chromium

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(KAFKA_LIBS)/.complete: infra/kafka/pom.xml
	rm -rf $(KAFKA_LIBS)
	mvn -q -B -f infra/kafka/pom.xml \
	  org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
	  -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS)
	touch $@

postgres-server:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null

# The browser tests drive Debian's chromium through Playwright (no browser download).
chromium:
	@test -x /usr/bin/chromium || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@test -x /usr/bin/chromium

run: deps
	$(PY) -m infra run

up: deps
	$(PY) -m infra up

down:
	@if [ -x $(PY) ]; then $(PY) -m infra down; else echo "nothing to stop (no venv)"; fi

status: deps
	$(PY) -m infra status

# Three KRaft brokers with SASL/SCRAM and ACLs, topics replicated 3 times (min.insync.replicas 2),
# PostgreSQL and every service, each as its own Kafka principal (docs/cluster.md)
cluster: deps
	$(PY) -m infra.cluster up

cluster-down:
	@if [ -x $(PY) ]; then $(PY) -m infra.cluster down; else echo "nothing to stop (no venv)"; fi

cluster-status: deps
	$(PY) -m infra.cluster status

# The unit tests first, on both cores (pytest-xdist: CPU-bound, no broker; 201 s instead of
# ~330 on 2026-12-08), then the broker-backed ones one at a time as ever (they share a session
# broker and database, and their services want the cores). The 25 slowest tests close the
# output: the CI's 30-minute budget is spent there.
test: deps
	$(PY) -m pytest tests/unit -n 2 --durations=10
	$(PY) -m pytest tests/integration tests/e2e --durations=25

test-unit: deps
	$(PY) -m pytest tests/unit -n 2

test-integration: deps
	$(PY) -m pytest tests/integration

test-e2e: deps
	$(PY) -m pytest tests/e2e

# Schemathesis against a running stack (`make up`; this starts nothing): every check, every phase
# (stateful too), FUZZ_EXAMPLES per operation; admin operations with .state/admin.key (or
# MARKETLOG_ADMIN_KEY), account ones with the key of an account it opens. FUZZ_SEED replays a run.
FUZZ_EXAMPLES ?= 500
FUZZ_URL ?= http://127.0.0.1:$(or $(MARKETLOG_HTTP_PORT),8080)
fuzz-http: $(VENV)/.installed
	$(PY) -m tests.e2e.test_gateway_http --url $(FUZZ_URL) --examples $(FUZZ_EXAMPLES) \
	  $(if $(FUZZ_SEED),--seed $(FUZZ_SEED))

# Deterministic simulation of the whole exchange in memory (testkit.simulate): SEEDS seeds from
# START, each a run with random commands, deliveries and crashes, every invariant checked. SEED=n
# reruns one seed (a failure prints that command). The unit suite runs the first 300.
SEEDS ?= 5000
START ?= 0
simulate: $(VENV)/.installed
	$(PY) -m testkit.simulate $(if $(SEED),--seed $(SEED),--seeds $(SEEDS) --start $(START))

bench: deps
	$(PY) -m bench

# The scale curve (bench/scale.py, ~13 minutes): 1, 2 and 3 instances of each processor on three
# brokers, 6 partitions; bench/results/<date>T<HHMM>-scale.json and .md.
scale: deps
	$(PY) -m bench.scale

# Faults under load on XML, HTTP, the private channel and day trading (bench/chaos.py): kill -9
# of every service instance, a paused processor, a broker killed and restarted; lost/duplicated
# counts, audits, recovery per fault in bench/results/. CLUSTER=1: on three brokers as make cluster
# runs them (one of them killed), with CHAOS_INSTANCES (default 2 there) of each processor.
CHAOS_SECONDS ?= 180
CHAOS_FAULTS ?= 10
CHAOS_SEED ?= 1
CHAOS_INSTANCES ?= $(if $(CLUSTER),2,1)
chaos: deps
	$(PY) -m bench.chaos --seconds $(CHAOS_SECONDS) --faults $(CHAOS_FAULTS) --seed $(CHAOS_SEED) \
	  --instances $(CHAOS_INSTANCES) $(if $(CLUSTER),--cluster)

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: deps
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: down cluster-down
	rm -rf .state

distclean: clean
	rm -rf $(VENV) .cache
