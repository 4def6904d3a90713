# Glory-Hole. `make run` and `make test` are the two-command quickstart (README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 5300
DURATION ?= 60

.PHONY: run test test-sqlite test-fast test-pure test-postgres bench-pg faults soak lint format bench bench-web loadtest migrations-check migrate venv dev-venv ext clean chromium kdig unbound

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

# The compiled twin of the DNS core (setup.py, dnsengine/core/compiled.py): each listed .py compiled
# in place by Cython into a .so beside it. Optional: when it cannot be built (no compiler, no Python
# headers, a compile error) this prints one line why and the engine runs the .py files. The stamp
# holds "built" or the reason; any edit of a core source rebuilds it (and the import switch ignores
# a .so whose source changed since, so a stale one is never imported). Missing gcc or headers are
# installed with apt-get when we are root (not for a CC that is there but fails). A CC given on
# the command line (make dev-venv CC=/bin/false) is passed on.
EXT_SOURCES := setup.py $(wildcard dnsengine/core/*.py dnsengine/core/*.pxd dnsengine/core/*.pyx)
EXT_CC := $(if $(filter command line environment,$(origin CC)),CC='$(CC)')
$(VENV)/.ext: $(VENV)/.runtime $(EXT_SOURCES)
	@$(EXT_CC) $(PY) setup.py toolchain 2>/dev/null; if [ $$? = 2 ]; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			echo "compiled core: installing build-essential python3-dev (apt-get)"; \
			(apt-get update -q && apt-get install -y -q build-essential python3-dev) >/dev/null 2>&1 || true; \
		else echo "compiled core: no C compiler or Python headers and no root apt-get: apt-get install build-essential python3-dev" >&2; fi; \
	fi
	@echo "compiled core: building (setup.py build_ext --inplace, log in $(VENV)/ext.log)"
	@if $(EXT_CC) $(PY) setup.py -q build_ext --inplace -j $$(nproc 2>/dev/null || echo 1) >$(VENV)/ext.log 2>&1; then \
		echo built >$@; echo "compiled core: built"; \
	else why=$$(grep '^not built: ' $(VENV)/ext.log | tail -1); why=$${why:-not built: see $(VENV)/ext.log}; \
		echo "$$why" >$@; echo "compiled core $$why; the engine runs as pure Python" >&2; fi

venv: $(VENV)/.runtime $(VENV)/.ext
dev-venv: $(VENV)/.dev $(VENV)/.ext

# Rebuild the compiled core by hand (after editing a core module outside make).
ext: $(VENV)/.runtime
	rm -f $(VENV)/.ext
	$(MAKE) $(VENV)/.ext

migrate: venv
	$(PY) manage.py migrate --noinput

# The engine (DNS on HOST:PORT) and the web UI (gunicorn on WEB) in the foreground;
# gloryhole_site/run.py migrates, creates the first admin (password printed once) and
# collects static files first. Ctrl-C stops both.
WEB ?= 127.0.0.1:8000
run: venv
	$(PY) -m gloryhole_site.run --dns-host $(HOST) --dns-port $(PORT) --web $(WEB)

# The whole suite on SQLite with the compiled core (when it was built), then again on a
# throw-away PostgreSQL server that devtools/pgtest.sh starts on loopback (installing Debian's
# postgresql if missing) and removes afterwards, even on failure, with the pure-Python core
# (GLORYHOLE_NO_EXTENSIONS=1, inherited by the rundns processes the tests start): so every
# test runs against both. `make test-sqlite` needs no PostgreSQL; `make test-pure` is SQLite, pure.
# GLORYHOLE_EXPECT_EXTENSIONS=1 makes dnsengine/tests/test_compiled.py fail unless every listed
# module really is the .so.
PYTEST_ARGS ?=
test: test-sqlite test-postgres

test-sqlite: dev-venv chromium unbound kdig
	GLORYHOLE_EXPECT_EXTENSIONS=$$(grep -qx built $(VENV)/.ext && echo 1) $(PY) -m pytest $(PYTEST_ARGS)

test-pure: dev-venv chromium unbound kdig
	GLORYHOLE_NO_EXTENSIONS=1 $(PY) -m pytest $(PYTEST_ARGS)

# The fast loop while editing: SQLite, without the tests marked integration (those that
# start rundns, manage.py, gunicorn, another python or a browser, and those that hold a
# running engine or writer for a second or more).
test-fast: dev-venv
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

test-postgres: dev-venv chromium unbound kdig
	GLORYHOLE_NO_EXTENSIONS=1 devtools/pgtest.sh $(PY) -m pytest $(PYTEST_ARGS)

# The browser test drives Debian's chromium through Playwright; never a browser
# build downloaded by `playwright install`.
chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

# The encrypted-upstream tests run Debian's unbound on loopback as an independent DoT and
# DoH server (dnsengine/tests/test_upstream_encrypted.py); it never recurses there.
unbound:
	@command -v unbound >/dev/null || (apt-get update && apt-get install -y unbound)

# The encrypted-DNS tests ask the engine's DoT and DoH with Knot's kdig (+tls, +https) too.
kdig:
	@command -v kdig >/dev/null || (apt-get update && apt-get install -y knot-dnsutils)

# Web response times on a temporary database of N synthetic queries (not a test).
BENCH_ROWS ?= 5000000
bench-web: dev-venv
	$(PY) -m devtools.bench.web --rows $(BENCH_ROWS)

# The DNS hot path in-process, then query log costs (not a test): one log_async call, writer rows/s for pool vs
# thread-per-query, bulk_create vs multi-row INSERT, with and without rollups, on a
# temporary SQLite file. Medians of 3 runs; about a minute on an idle 2-core machine.
QUERYLOG_BENCH_ARGS ?=
bench: dev-venv
	$(PY) -m devtools.bench.engine
	$(PY) -m devtools.bench.groups
	$(PY) -m devtools.bench.local_records
	$(PY) -m devtools.bench.querylog $(QUERYLOG_BENCH_ARGS)

# SQLite page cache and checkpoint interval for the query log: CPU per row as the table
# grows, SQLite's defaults against ours (devtools/bench/sqlite.py, docs/querylog.md).
BENCH_SQLITE_ARGS ?=
.PHONY: bench-sqlite
bench-sqlite: dev-venv
	$(PY) -m devtools.bench.sqlite $(BENCH_SQLITE_ARGS)

# Disk space of the query log on SQLite per million rows (tables, indexes, rollups, the
# WAL's peak), written through the engine's writer (devtools/bench/disk.py, docs/querylog.md).
BENCH_DISK_ARGS ?=
.PHONY: bench-disk
bench-disk: dev-venv
	$(PY) -m devtools.bench.disk $(BENCH_DISK_ARGS)

# Query-log writes on SQLite with batches of every size: one statement per batch
# vs reused power-of-two pieces (CPU, rows/s, SQLite's heap).
.PHONY: bench-statements
bench-statements: dev-venv
	$(PY) -m devtools.bench.statements $(BENCH_STATEMENTS_ARGS)

# ruff comes with the dev requirements, so this works on a fresh clone.
lint: dev-venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: dev-venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Fails when a model change has no migration (CI runs it with lint and test: .ci/run).
migrations-check: venv
	$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dnsengine/core/_compiled.json
	rm -f dnsengine/core/*.so dnsengine/core/*.c

# make loadtest: dnsperf against the engine and a dnslib baseline, on loopback only
# (devtools/load/loadtest.py, docs/loadtest.md). DURATION is seconds per variant (8 variants).
# The file-wide DURATION default (60) would make the default run ~9 minutes, so unless
# DURATION is given on the command line or in the environment each run gets
# LOADTEST_DURATION seconds, which keeps a default `make loadtest` under ~3 minutes.
LOADTEST_DURATION ?= 10
LOADTEST_VARIANTS ?= all
LOADTEST_ARGS ?=
loadtest: venv
	@command -v dnsperf >/dev/null || (apt-get update && apt-get install -y dnsperf) \
		|| { echo "dnsperf is missing and could not be installed (apt-get install dnsperf)" >&2; exit 2; }
	$(PY) -m devtools.load.loadtest \
		--duration $(if $(filter file,$(origin DURATION)),$(LOADTEST_DURATION),$(DURATION)) \
		--variants $(LOADTEST_VARIANTS) $(LOADTEST_ARGS)

# Privacy level 3 against the log off and the log at level 0, at full speed (docs/privacy.md).
.PHONY: loadtest-privacy
loadtest-privacy:
	$(MAKE) loadtest LOADTEST_VARIANTS=nolog-max,pool-max,private-max

# The query log written by a child process against the pool and the log off, at 10k and
# full speed (docs/querylog.md, "Writer process").
.PHONY: loadtest-writer
loadtest-writer:
	$(MAKE) loadtest LOADTEST_VARIANTS=nolog-10k,pool-10k,process-10k,nolog-max,pool-max,process-max

# Encrypted upstreams: the engine forwarding to one unbound over plain UDP, DoT and DoH,
# side by side (devtools/load/encrypted.py, docs/encrypted-dns.md).
.PHONY: loadtest-encrypted-upstreams
loadtest-encrypted-upstreams: unbound
	$(MAKE) loadtest LOADTEST_VARIANTS=udpub-10k,updot-10k,updoh-10k,udpub-max,updot-max,updoh-max

# DoT and DoH clients beside plain UDP, same query log, one run (docs/encrypted-dns.md).
.PHONY: loadtest-encrypted
loadtest-encrypted:
	$(MAKE) loadtest LOADTEST_VARIANTS=pool-10k,pool-max,dot-10k,dot-max,doh-10k,doh-max

# Client groups against one group: 200 clients in 5 groups, dnsperf from 10 of their
# addresses, side by side (devtools/load/clients.py, docs/clients.md). Not a test.
LOADTEST_CLIENTS_ARGS ?=
.PHONY: loadtest-clients
loadtest-clients: venv
	@command -v dnsperf >/dev/null || (apt-get update && apt-get install -y dnsperf) \
		|| { echo "dnsperf is missing and could not be installed (apt-get install dnsperf)" >&2; exit 2; }
	$(PY) -m devtools.load.clients $(LOADTEST_CLIENTS_ARGS)

# Blocklist matcher designs on 1,000,000 generated names: build time, RSS, lookups/s for
# hits, subdomain hits and misses, then the engine's full reload from SQLite. Not a test;
# docs/blocklists.md has the figures. BENCH_BLOCKLIST_ARGS="--domains 200000 --no-reload" for a quick run.
BENCH_BLOCKLIST_ARGS ?=
.PHONY: bench-blocklist
bench-blocklist: dev-venv
	$(PY) -m devtools.bench.blocklist $(BENCH_BLOCKLIST_ARGS)

# The query log on PostgreSQL (not a test): writer rows/s for INSERT ... VALUES, COPY and
# bulk_create with 1, 2 and 4 writers, and retention's cost, on a throw-away server with
# fsync on. docs/scale-out.md has the figures.
QUERYLOG_BENCH_PG_ARGS ?=
bench-pg: dev-venv
	PGTEST_DURABLE=1 devtools/pgtest.sh $(PY) -m devtools.bench.querylog_pg $(QUERYLOG_BENCH_PG_ARGS)

# Hard faults under dnsperf load on loopback, each bounded in time (devtools/load/faults.py,
# docs/scale-out.md): PostgreSQL stopped for 30 s, kill -9, SIGTERM, web restart.
# By hand, not in CI. FAULTS="pg-down kill9" runs a few.
FAULTS ?= all
faults: dev-venv
	@command -v dnsperf >/dev/null || (apt-get update && apt-get install -y dnsperf)
	PGTEST_DURABLE=1 devtools/pgtest.sh $(PY) -m devtools.load.faults $(FAULTS)

# Soak (by hand): SOAK_QPS queries/s for DURATION seconds (30 minutes unless DURATION is
# given), RSS, threads and queue depth printed each minute. SOAK_DB=sqlite for the default backend.
SOAK_QPS ?= 10000
SOAK_DB ?= postgres
soak: dev-venv
	@command -v dnsperf >/dev/null || (apt-get update && apt-get install -y dnsperf)
	$(if $(filter postgres,$(SOAK_DB)),PGTEST_DURABLE=1 devtools/pgtest.sh) $(PY) -m devtools.load.faults soak \
		--qps $(SOAK_QPS) --duration $(if $(filter file,$(origin DURATION)),1800,$(DURATION))
