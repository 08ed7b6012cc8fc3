# The two commands a new machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench soak clean chromium

# The bench SMSC on the npm smpp package (bench/smsc_node): node_modules from the lock file.
NODE_SMSC := bench/smsc_node/node_modules/.package-lock.json

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

## Set up, create/upgrade the SQLite database, load demo data once, run the server in the foreground.
run: $(STAMP)
	$(BIN)/loyalty db upgrade
	$(BIN)/loyalty demo --if-empty
	$(BIN)/twistd -ny twistd.tac

## Debian's chromium for the console's browser tests (Playwright drives it; nothing is downloaded
## by Playwright itself). Installed with apt-get when missing and we are root.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else \
	    echo "chromium missing: run 'sudo apt-get install chromium' for the browser tests"; \
	  fi; \
	fi

## Set up and run the whole test suite (PostgreSQL tests too when LOYALTY_TEST_DATABASE_URL is set).
test: $(STAMP) $(NODE_SMSC) chromium
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(STAMP) $(NODE_SMSC)
	$(BIN)/loyalty bench

# Without npm this is a note, not a failure: the node SMSC's test is skipped without node.
$(NODE_SMSC): bench/smsc_node/package.json bench/smsc_node/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix bench/smsc_node --no-audit --no-fund && touch $@; \
	else echo "npm not found: the node SMSC (bench.sms_peer_bench) is not installed"; fi

## 10 minutes of mixed load (1,000 calls + 500 MO/s) on SQLite, then on PostgreSQL
## (LOYALTY_TEST_DATABASE_URL, else the local one); about 27 minutes in all. Exit 1 on any error.
soak: $(STAMP)
	$(BIN)/python -m bench.soak_bench --backend both --duration 600

clean:
	rm -rf $(VENV) var/*.sqlite3* bench/smsc_node/node_modules
