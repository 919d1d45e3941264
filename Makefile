# The two commands of a fresh machine: `make demo` and `make test`.
# Both create .venv and install what they need; `make test` also installs
# redis-server and chromium with apt-get when they are missing (tests start
# their own servers and browsers).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
SUDO   := $(shell [ "$$(id -u)" -ne 0 ] && command -v sudo)
LOG    := examples/orders/events.jsonl
APP    := examples.orders.app:migration
APP_V2 := examples.orders.v2:migration
OUT    := build/demo

.PHONY: demo test bench system-deps clean help

help:
	@echo "make demo    - install, replay the example log through both paths, then the v2 rewrite"
	@echo "make test    - install (with redis-server via apt-get if missing) and run the tests"
	@echo "make bench   - run the benchmarks in bench/ (prints ratios measured side by side)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "installing migration-kit and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@{ $(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -e '.[dev]'; } > $(VENV)/install.log 2>&1 \
	  || { tail -n 30 $(VENV)/install.log; echo "pip install failed: see $(VENV)/install.log"; exit 1; }
	@touch $@

# What the tests need from the system: redis-server (real servers, started by
# the tests), Debian's chromium (the HTML report is checked in a browser) and
# postgresql (its initdb and pg_ctl: the tests start their own server).
system-deps:
	@missing=""; \
	  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || missing="$$missing redis-server"; \
	  command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing with apt-get:$$missing"; \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	      || { echo "apt-get could not install$$missing"; exit 1; }; \
	  fi
	@redis-server --version

demo: $(STAMP)
	@mkdir -p $(OUT)
	@echo "== 1. the legacy orders app against its own wrapped graph (expect parity)"
	@$(BIN)/migration-kit replay $(LOG) --app $(APP) --json $(OUT)/orders.json --html $(OUT)/orders.html; \
	  status=$$?; if [ $$status -ne 0 ]; then echo "expected exit 0 (parity: CONTINUE or PROMOTE), got $$status"; exit 1; fi
	@echo
	@echo "== 2. v2: one handler rewritten as a native LangGraph node (expect a localized divergence)"
	@$(BIN)/migration-kit replay $(LOG) --app $(APP_V2) --json $(OUT)/orders-v2.json --html $(OUT)/orders-v2.html; \
	  status=$$?; if [ $$status -ne 1 ]; then echo "expected exit 1 (divergence found), got $$status"; exit 1; fi
	@echo
	@echo "reports written to $(OUT)/"

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

bench: $(STAMP) system-deps
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis migration-kit.sqlite*
