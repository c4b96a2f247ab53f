# flashsale — build, run, test.  `make help` lists the targets.
#
# Knobs (not copies): SANITIZE=address|thread picks a sanitizer build into its own
# folder, WERROR=1 turns warnings into errors (CI sets it), CC picks the compiler.

CC        ?= cc
SANITIZE  ?=
WERROR    ?=
PKGS      := libmicrohttpd jansson sqlite3 libpq

# Debian packages the build, the tests, the load scripts and the benchmark need.
# `make deps` installs whichever are missing (apt-get update first: a fresh machine
# may have empty package lists).
DEB_BUILD := build-essential pkg-config libmicrohttpd-dev libjansson-dev libsqlite3-dev libpq-dev sqlite3
DEB_TEST  := python3 clang libclang-rt-dev wrk curl procps
DEB_BENCH := nginx-light gnuplot-nox
DEB_E2E   := chromium fonts-wqy-microhei
DEB_PG    := postgresql postgresql-client libpq-dev nginx-light docker-compose
# promtool (metrics and alert rules), systemd-analyze (the unit), man and groff (the man
# page), strace (the unit's system-call filter against the calls the service makes).
DEB_ECO   := prometheus systemd man-db groff-base strace
DEB_ALL   := $(DEB_BUILD) $(DEB_TEST) $(DEB_BENCH) $(DEB_ECO)

WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
        -Wpointer-arith -Wcast-qual -Wwrite-strings -Wvla -Wnull-dereference \
        -Wimplicit-fallthrough -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN += -Werror
endif

ifeq ($(SANITIZE),address)
BUILD  := build/asan
SANFL  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT    := -O1
else ifeq ($(SANITIZE),thread)
BUILD  := build/tsan
SANFL  := -fsanitize=thread -fno-omit-frame-pointer
OPT    := -O1
else
BUILD  := build
SANFL  :=
OPT    := -O2
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS   += -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) $(SANFL) -MMD -MP -Isrc -I$(BUILD)/gen $(PKG_CFLAGS)
LDFLAGS  += $(SANFL)
LDLIBS   += $(PKG_LIBS) -lpthread -lm

# Every module but main.c is also linked into the unit tests and fuzzers.
MODULES := config log shm outcome route payload hist metrics ledger inventory pool hmac ratelimit framing gate ipc proc \
           store store_sqlite store_pg http call api reads purchase orders admin render assets clock version ordertoken
OBJS    := $(MODULES:%=$(BUILD)/%.o)
GEN     := $(BUILD)/gen/schema_sql.h
UNITS   := $(patsubst tests/%.c,%,$(wildcard tests/test_*.c))

.PHONY: all help deps deps-e2e deps-pg run test test-unit test-api test-crowd test-kill test-lifecycle \
        test-powerloss soak test-tsan test-asan test-e2e test-pg test-cluster test-hostile test-ecosystem test-framing \
        asan tsan fuzz loadtest bench lab clean install uninstall

all: $(BUILD)/flashsale $(BUILD)/loadgen $(BUILD)/storebench $(BUILD)/flashsale.1 $(BUILD)/powerloss.so

help:
	@echo "make deps        install missing Debian packages (apt-get)"
	@echo "make run         build and start on http://127.0.0.1:8080 with a demo sale"
	@echo "make test        every test, closing with 'N passed, N failed'"
	@echo "make asan|tsan   sanitizer builds (build/asan, build/tsan)"
	@echo "make loadtest    flash crowd end to end, fails on any oversell"
	@echo "make bench       throughput table vs nginx and the raw store"
	@echo "make lab         the primer's claims (threads, processes, pools) measured; LAB=<name> for one"
	@echo "make soak        120 kill -9 + 30 SIGTERM rounds mid-crowd, every strategy"
	@echo "make test-powerloss  simulated power cuts below SQLite (durability full, normal)"
	@echo "make fuzz        libFuzzer runs of the parsers and the router"
	@echo "make install     binary, dashboard, man page, systemd unit under PREFIX=$(PREFIX) (and DESTDIR)"
	@echo "make uninstall   removes what make install put there"

# --- dependencies -------------------------------------------------------------
# dpkg-query tells which packages are missing; only then do we touch apt.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	fi
endef

deps:
	$(call apt_install,$(DEB_ALL))

# Node.js comes from Debian only when the machine has none (Debian 12's is v18, so every
# npm pin must allow Node 18).  npm ci again whenever the lockfile is newer than what
# node_modules holds, so a changed pin is installed, not shadowed by an older copy.
deps-e2e:
	$(call apt_install,$(DEB_E2E) $(if $(shell command -v node),,nodejs) $(if $(shell command -v npm),,npm))
	@test tests/e2e/node_modules/.package-lock.json -nt tests/e2e/package-lock.json || \
	  (cd tests/e2e && npm ci --no-audit --no-fund --silent)

deps-pg:
	$(call apt_install,$(DEB_PG))

# The OpenAPI tools (Redocly CLI, Prism), pinned in tests/contract/package-lock.json.
.PHONY: deps-contract test-contract
deps-contract:
	$(call apt_install,$(if $(shell command -v node),,nodejs) $(if $(shell command -v npm),,npm))
	@test -d tests/contract/node_modules/@stoplight/prism-http || \
	  (cd tests/contract && npm ci --no-audit --no-fund --silent)

# --- build --------------------------------------------------------------------
$(BUILD)/gen/schema_sql.h: sql/schema.sql sql/schema_pg.sql sql/migrations/*.sql sql/embed.sh Makefile
	@mkdir -p $(dir $@)
	sql/embed.sh $@ schema_sqlite_sql sql/schema.sql schema_pg_sql sql/schema_pg.sql \
	  migrate_sqlite_002 sql/migrations/sqlite-002-closed-at.sql \
	  migrate_sqlite_003 sql/migrations/sqlite-003-meta.sql

$(BUILD)/%.o: src/%.c | $(GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/flashsale: $(BUILD)/main.o $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The man page is rendered by the binary from the table that drives --help.
$(BUILD)/flashsale.1: $(BUILD)/flashsale
	$< --help-man > $@.tmp && mv $@.tmp $@

$(BUILD)/loadgen: loadtest/loadgen.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -o $@ $< -lm

# make lab's stand-alone experiments: no flashsale module, just the primer's claims.
$(BUILD)/lab_%: loadtest/lab/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -o $@ $< -lpthread

# Test-only: a SQLite VFS that simulates power cuts, LD_PRELOADed by tests/test_powerloss.py.
$(BUILD)/powerloss.so: tests/powerloss_vfs.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g -fPIC -shared $(WARN) -o $@ $< $(shell pkg-config --libs sqlite3) -lpthread

$(BUILD)/storebench: loadtest/storebench.c $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(OBJS) $(LDLIBS)

$(BUILD)/test_%: tests/test_%.c tests/unit.h $(OBJS)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(OBJS) $(LDLIBS)

asan:
	$(MAKE) SANITIZE=address build/asan/flashsale
tsan:
	$(MAKE) SANITIZE=thread build/tsan/flashsale

# --- run ----------------------------------------------------------------------
run: deps
	$(MAKE) build/flashsale
	./build/flashsale

# --- install ------------------------------------------------------------------
# GNU conventions: PREFIX (default /usr/local) and DESTDIR (a staging root).  The
# binary finds PREFIX/share/flashsale/static by itself (see config.c), and the unit's
# ExecStart is rewritten to PREFIX/bin.  The database is not touched: it lives in
# /var/lib/flashsale (the unit's StateDirectory) or wherever --db says.
PREFIX  ?= /usr/local
BINDIR  := $(PREFIX)/bin
DATADIR := $(PREFIX)/share/flashsale
MANDIR  := $(PREFIX)/share/man/man1
UNITDIR := $(PREFIX)/lib/systemd/system

install: build/flashsale build/flashsale.1
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(DATADIR)/static" "$(DESTDIR)$(MANDIR)" "$(DESTDIR)$(UNITDIR)"
	install -m 0755 build/flashsale "$(DESTDIR)$(BINDIR)/flashsale"
	cd static && find . -type f | while read -r f; do \
	  install -D -m 0644 "$$f" "$(DESTDIR)$(DATADIR)/static/$$f" || exit 1; done
	install -m 0644 docker/flashsale.env "$(DESTDIR)$(DATADIR)/flashsale.env"
	install -m 0644 build/flashsale.1 "$(DESTDIR)$(MANDIR)/flashsale.1"
	sed 's|/usr/local/bin/flashsale|$(BINDIR)/flashsale|' docker/flashsale.service > build/flashsale.service
	install -m 0644 build/flashsale.service "$(DESTDIR)$(UNITDIR)/flashsale.service"

# Quoted, and the folder removed whole only when it is flashsale's own: a PREFIX with a
# space, or a DATADIR set by hand, must never widen the rm -rf.
uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/flashsale" "$(DESTDIR)$(MANDIR)/flashsale.1" "$(DESTDIR)$(UNITDIR)/flashsale.service"
	@case "$(DATADIR)" in */flashsale) rm -rf "$(DESTDIR)$(DATADIR)" ;; \
	  *) echo "uninstall: DATADIR ($(DATADIR)) is not a flashsale folder; left alone" >&2; exit 1 ;; esac

# --- tests --------------------------------------------------------------------
# tests/run.sh runs each suite, counts every case and prints one closing line.
test: deps deps-e2e deps-pg deps-contract
	$(MAKE) WERROR=1 all $(UNITS:%=build/%) build/lab_creation build/lab_cacheline build/lab_ipc
	$(MAKE) WERROR=1 SANITIZE=thread build/tsan/flashsale $(UNITS:%=build/tsan/%)
	$(MAKE) WERROR=1 SANITIZE=address build/asan/flashsale $(UNITS:%=build/asan/%)
	tests/run.sh all

test-unit: $(UNITS:%=$(BUILD)/%)
	$(if $(filter thread,$(SANITIZE)),setarch $$(uname -m) -R) tests/run.sh unit $(BUILD)

test-api: all
	tests/run.sh api

test-crowd: all
	tests/run.sh crowd

test-lifecycle: all
	tests/run.sh lifecycle

test-kill: all
	KILL_ROUNDS=$(or $(KILL_ROUNDS),20) tests/run.sh kill

# The soak: 120 kill -9 and 30 SIGTERM rounds mid-crowd across atomic, mutex and sqlite,
# a restart on the same file after each (not part of make test, which runs 3 + 1).
soak: all
	SOAK_KILL_ROUNDS=$(or $(KILL_ROUNDS),120) SOAK_TERM_ROUNDS=$(or $(TERM_ROUNDS),30) tests/run.sh soak

# At least 100 simulated power cuts with --durability full (0 acknowledged orders may
# be lost), 100 with normal (losses measured), 10 with fsync ignored (losses required);
# under --model threads, then --model processes.
test-powerloss: all
	POWERLOSS_CUTS="$(or $(CUTS),100 100 10)" tests/run.sh powerloss

test-tsan: all
	$(MAKE) SANITIZE=thread build/tsan/flashsale $(UNITS:%=build/tsan/%)
	tests/run.sh tsan

test-asan: all
	$(MAKE) SANITIZE=address build/asan/flashsale $(UNITS:%=build/asan/%)
	tests/run.sh asan

test-e2e: all deps-e2e
	tests/run.sh e2e

test-pg: all deps-pg
	tests/run.sh pg

test-cluster: all deps-pg
	tests/run.sh cluster

test-hostile: all
	tests/run.sh hostile

test-ecosystem: all
	tests/run.sh ecosystem

test-contract: all deps-contract
	tests/run.sh contract

test-framing: all
	tests/run.sh framing

fuzz:
	tests/fuzz.sh $(FUZZ_RUNS)

loadtest: deps all
	python3 loadtest/run.py

bench: deps all
	python3 loadtest/bench.py

# Every claim of the primer, measured (LAB=creation|pool|processes|cores|safety for one).
lab: deps all build/lab_creation build/lab_cacheline build/lab_ipc
	python3 loadtest/lab.py

clean:
	rm -rf build

-include $(wildcard $(BUILD)/*.d)
