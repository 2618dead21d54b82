# Two set-up commands for a fresh machine (see README):
#   make run    install into .venv and start the gateway on SQLite with demo data at http://127.0.0.1:8080/fhir
#               (make run PORT=8090 for another port)
#   make test   install into .venv (with test extras, and the npm packages of apps/smart-demo and tests/clients/node
#               when npm is there); ruff, mypy, the import layering check, the whole test suite
# Both also install the browser library of the apps the gateway serves (gateway/webapps: fhirclient for the
# care-gaps SMART app; axe-core for its accessibility tests) with `npm ci`, when npm is there.
#   make screenshots   rerun the browser tests marked `screenshots`, which save the apps' screens in docs/apps/
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8080
VENV ?= .venv
BIN := $(VENV)/bin

WEBAPPS := gateway/webapps

.PHONY: run test install install-test lint bench clean webapps screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# the gateway's own modules compiled to bytecode once: an editable install leaves that to the first import,
# which skips writing it where PYTHONDONTWRITEBYTECODE is set, so every process (a pool worker, a CLI call, a
# test's live server) would compile them again; stale files are recompiled by Python itself
BYTECODE = $(BIN)/python -m compileall -q -j 0 -x node_modules gateway > /dev/null

install: $(BIN)/python webapps
	$(BIN)/pip install --quiet -e .
	$(BYTECODE)

# the served apps' npm packages, pinned by gateway/webapps/package-lock.json; installed again only when the lock
# file changes (the gateway serves them itself: no CDN at run time)
webapps:
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "npm not found: the care-gaps app (/apps/care-gaps) needs its fhirclient library; install nodejs and npm, then make install"; \
	elif [ ! -f $(WEBAPPS)/node_modules/.package-lock.json ] || [ $(WEBAPPS)/package-lock.json -nt $(WEBAPPS)/node_modules/.package-lock.json ]; then \
	  npm ci --prefix $(WEBAPPS) --no-audit --no-fund --silent; fi

install-test: $(BIN)/python webapps
	$(BIN)/pip install --quiet -e ".[test]"
	$(BYTECODE)
	@# the Node FHIR client libraries tests/clients drives (skipped with a named reason where npm is missing)
	if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/clients/node --no-audit --no-fund; fi
	@# the SMART demo app's fhirclient (apps/smart-demo, pinned by its package-lock.json) for its browser tests
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix apps/smart-demo --no-audit --no-fund --silent; \
	else echo "npm not found: the SMART demo app tests (tests/smart/test_smart_demo_app.py) will be skipped"; fi

run: install
	$(BIN)/fhir-gateway serve --host $(HOST) --port $(PORT) --auth off --demo

test: install-test
	$(BIN)/ruff check gateway tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 -q --durations=25

lint: install-test
	$(BIN)/ruff check gateway tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports

screenshots: install-test
	SCREENSHOTS_DIR=docs/apps $(BIN)/python -m pytest -p no:xdist -q -m screenshots tests

bench: install-test
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache
