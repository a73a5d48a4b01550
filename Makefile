# The two commands: `make run` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test demo staff install bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

## make run: install, migrate, start Redis (unless REDIS_URL is set), web + worker + clock
run: install
	$(BIN)/python -m app.runner

## make test: install what the tests need and run them all (SQLite and PostgreSQL, real Redis)
test: install
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider

## make demo: while `make run` is up, register demo shops and post signed webhooks to it
demo: install
	$(BIN)/flask --app app demo

## make staff EMAIL=you@example.com: create an admin log-in (asks for the password)
staff: install
	$(BIN)/flask --app app staff create --email "$(EMAIL)"

bench: install
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.worker

clean:
	rm -rf $(VENV) instance
