# collab: PGXS build, plus the project's set-up, test, demo and bench entry points.

EXTENSION = collab
EXTVERSION = 0.2.0

MODULE_big = collab
OBJS = \
	src/access.o \
	src/access_live.o \
	src/collab.o \
	src/conn.o \
	src/eio.o \
	src/errors.o \
	src/event_queue.o \
	src/events.o \
	src/json_object.o \
	src/jobs.o \
	src/jwt.o \
	src/listen.o \
	src/leases.o \
	src/lock_path.o \
	src/metrics.o \
	src/module.o \
	src/owner.o \
	src/payloads.o \
	src/plans.o \
	src/poll_http.o \
	src/poll_transport.o \
	src/relay.o \
	src/resource_id.o \
	src/resource_id_sql.o \
	src/revisions.o \
	src/role.o \
	src/rooms.o \
	src/sampling.o \
	src/save_guard.o \
	src/session.o \
	src/static_files.o \
	src/sio_codec.o \
	src/tokens.o \
	src/trigger_rows.o \
	src/worker.o \
	src/ws_transport.o

DATA = sql/collab--0.1.0.sql sql/collab--0.1.0--0.2.0.sql
PGFILEDESC = "collab - collaborative editing with fenced editor locks"

REGRESS = resource_id documents locks saves events presence privileges token_epochs revisions access payloads grace comments
REGRESS_OPTS = --inputdir=test --load-extension=collab
ISOLATION = acquire_race parent_child save_vs_takeover renew_vs_release sweep_vs_acquire join_vs_delete save_race_revisions purge_vs_save revoke_vs_save revoke_vs_acquire revoke_vs_join lock_space suspend_vs_acquire suspend_vs_takeover grace_vs_handoff ttl_during_grace
ISOLATION_OPTS = --inputdir=test --load-extension=collab

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK = -lwebsockets -lev -lssl -lcrypto
EXTRA_CLEAN = results output_iso test/unit/*.o

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifeq ($(PGXS),)
# A fresh machine has no server headers yet: only the set-up targets work.
all install installcheck check:
	@echo "postgresql-server-dev-15 is missing: run 'make deps' (or 'make test' / 'make demo')" >&2; exit 1
else ifneq ($(filter check,$(MAKECMDGOALS)),)
# The pg_regress and isolation suites on a temporary cluster, without Node
# or Chromium: 'make test SUITES=regress' without the set-up.  PGXS's own
# check target only says that it is not supported (and pg_regress
# --temp-instance cannot run initdb as root), so it is left out here.
check:
	$(MAKE) all
	$(MAKE) install
	SUITES=regress bash scripts/run-tests.sh
else
include $(PGXS)
endif

override CFLAGS += -Wall -Wmissing-prototypes

ifneq ($(PGXS),)
# The demo UI, served by the worker from SHAREDIR/extension/collab_ui.
UI_DIR = $(DESTDIR)$(datadir)/extension/collab_ui
install: install-ui
install-ui:
	$(MKDIR_P) '$(UI_DIR)/vendor'
	$(INSTALL_DATA) $(wildcard ui/*.html ui/*.js ui/*.css) '$(UI_DIR)/'
	$(INSTALL_DATA) $(wildcard ui/vendor/*) '$(UI_DIR)/vendor/'
uninstall: uninstall-ui
uninstall-ui:
	rm -rf '$(UI_DIR)'
.PHONY: install-ui uninstall-ui
endif

# PGXS does not track headers: rebuild every object when one changes.
$(OBJS): $(wildcard src/*.h)

.PHONY: deps test check demo demo-stop bench unit fuzz soak stress failover

# Installs every system and npm package the project needs (idempotent).
deps:
	bash scripts/deps.sh

# Everything CI runs: set-up, build, install, a throwaway cluster, every suite
# (SUITES="ws notify": only those; the names are in scripts/run-tests.sh).
test: deps
	$(MAKE) all
	$(MAKE) install
	SUITES="$(SUITES)" bash scripts/run-tests.sh

demo: deps
	$(MAKE) all
	$(MAKE) install
	bash scripts/demo.sh start

demo-stop:
	bash scripts/demo.sh stop

# libFuzzer runs of the network-facing parsers (FUZZ_SECONDS each, default 600).
FUZZ_SECONDS ?= 600
fuzz: deps
	$(MAKE) -C test/fuzz run FUZZ_SECONDS=$(FUZZ_SECONDS)

# Soak test (not part of 'make test', which runs a 500-client version):
# SOAK_CLIENTS clients for SOAK_SECONDS against a throwaway cluster, the
# worker's memory and descriptors sampled; see test/soak/README.md.
SOAK_CLIENTS ?= 10000
SOAK_SECONDS ?= 600
soak: deps
	$(MAKE) all
	$(MAKE) install
	SOAK_CLIENTS=$(SOAK_CLIENTS) SOAK_SECONDS=$(SOAK_SECONDS) bash test/soak/run.sh

# Concurrent writers (socket.io-client and SQL API, with stopped, killed and
# cut clients) against a throwaway cluster, then a check of the recorded
# history (not part of 'make test', which runs it for 15 s); see
# test/stress/README.md.
STRESS_SECONDS ?= 120
STRESS_WORKERS ?= 1
stress: deps
	$(MAKE) all
	$(MAKE) install
	STRESS_SECONDS=$(STRESS_SECONDS) STRESS_WORKERS=$(STRESS_WORKERS) bash test/stress/run.sh

# Failover drill (not part of 'make test', which runs it with 4 s of load):
# a primary and a streaming standby, writers through proxies, the primary
# stopped with -m immediate, the standby promoted, then one history check;
# with an asynchronous and with a synchronous standby.  See
# docs/high-availability.md.
FAILOVER_SECONDS ?= 20
FAILOVER_LAG_MS ?= 4000
failover: deps
	$(MAKE) all
	$(MAKE) install
	FAILOVER_SECONDS=$(FAILOVER_SECONDS) FAILOVER_LAG_MS=$(FAILOVER_LAG_MS) bash test/failover/run.sh

# Benchmarks (not part of 'make test'): the SQL core, then collab against the
# Node socket.io + Redis baseline (test/bench/ab), targets judged on the
# median of three runs; see docs/performance.md.  bench-quick: one run each.
BENCH_SECONDS ?= 5
bench: deps
	$(MAKE) all
	$(MAKE) install
	BENCH_SECONDS=$(BENCH_SECONDS) bash test/bench/bench.sh
bench-quick: deps
	$(MAKE) all
	$(MAKE) install
	BENCH_SECONDS=$(BENCH_SECONDS) BENCH_QUICK=1 bash test/bench/bench.sh
.PHONY: bench-quick
