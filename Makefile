# Two commands for a fresh machine (Python 3.11+, Java 17+, Maven, npm):
#   make run    set up, start the local Kafka broker, a worker and the demo (Ctrl-C stops all)
#   make test   set up, start a test broker, lint and run every test (two at a time), stop
#               the broker
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHARTS := app/web/static/uPlot.iife.min.js
# The test broker takes a free port (0) so it never meets the one `make run` uses, and
# starts with no data: every test makes topics, and a broker that kept those of all
# earlier runs grew to tens of thousands of partitions, slow to load and then failing.
TEST_KAFKA_PORT ?= 0
# Most of a test's time is spent waiting on workers and the broker, so make test runs two
# test files at a time (pytest-xdist; a file stays in one process, so the workers a file
# shares and the order of its tests stay as written), then the tests marked `alone`, which
# measure rates and times, one at a time with the machine to themselves. The files go in
# the order they are collected: xdist's default, most tests first, left the long
# integration files of few tests to the end, one process running them while the other idled.
TEST_JOBS ?= 2
PYTEST := $(BIN)/python -m pytest -q --durations=25
PYTEST_SHARED := $(PYTEST) -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder -m "not alone"
PYTEST_ALONE := $(PYTEST) -m alone

.PHONY: run test unit chaos setup browser lint bench clean

# The install's build step (setup.py) also fetches the dashboard's chart library with npm
# into app/web/static/ (pinned in app/web/assets.py, integrity-checked, not in git); a
# checkout that lost it installs again.
$(CHARTS):
$(STAMP): pyproject.toml setup.py app/web/assets.py $(CHARTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@command -v npm >/dev/null || [ -f $(CHARTS) ] || { \
	  $(call apt_install,npm,to fetch the dashboard's chart library); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/cps dev

# $(call apt_install,PACKAGES,WHY): install Debian packages (as root or with sudo).
define apt_install
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	echo "installing Debian's $(1) $(2)"; \
	$$SUDO apt-get install -y -q $(1) >/dev/null 2>&1 || \
	{ $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q $(1) >/dev/null; }
endef

# The dashboard test drives Debian's Chromium; install it when missing.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  $(call apt_install,chromium chromium-driver,for the dashboard test); \
	fi

# $(call with_test_broker,COMMANDS): run COMMANDS with CPS_BROKER set to a fresh test
# broker, stop the broker, exit with the status of COMMANDS (of the last one).
define with_test_broker
	@export CPS_KAFKA_PORT=$(TEST_KAFKA_PORT); \
	bootstrap=$$($(BIN)/cps kafka start --fresh | tail -n 1); \
	case "$$bootstrap" in bootstrap=*) ;; *) echo "the test broker did not start"; exit 1;; esac; \
	echo "test broker: $$bootstrap"; \
	export CPS_BROKER=$${bootstrap#bootstrap=}; $(1); status=$$?; \
	$(BIN)/cps kafka stop; \
	exit $$status
endef

test: setup browser
	$(BIN)/ruff check .
	$(call with_test_broker,$(PYTEST_SHARED); shared=$$?; $(PYTEST_ALONE) && test $$shared = 0)

# The fast tier: the domain rules, the handlers (on the memory context and the engine's
# Context) and the bench's own logic; no broker, under a minute.
unit: setup
	$(BIN)/python -m pytest -q tests/domain tests/handlers tests/bench

# The fault and garbage tests at full length (make test runs them short), and the plans'
# fault runs, which make test leaves out (docs/chaos.md).
chaos: setup
	$(call with_test_broker,CPS_CHAOS=full $(BIN)/python -m pytest -q --durations=10 \
	  tests/integration/test_chaos.py tests/integration/test_backlog.py \
	  tests/integration/test_fuzz.py tests/integration/test_plan_outcomes.py \
	  tests/integration/test_allocation.py)

# The full benchmark (about 1M events; see BENCHMARKS.md); `cps bench --quick` is a smoke run.
bench: setup
	$(BIN)/cps bench --markdown BENCHMARKS.md

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
