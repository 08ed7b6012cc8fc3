# The two commands a new machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

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

## Set up and run the whole test suite (PostgreSQL tests too when LOYALTY_TEST_DATABASE_URL is set).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/loyalty bench

clean:
	rm -rf $(VENV) var/*.sqlite3*
