# The two commands: `make run` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test demo staff install system-packages bench plugin clean

# Debian packages the tests use: a real browser for page tests, PHP and PHPUnit for the WordPress plugin.
SYSTEM_PACKAGES := chromium chromium-driver php-cli phpunit

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

## make system-packages: install the Debian packages above that are missing (as root, or with sudo)
system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || printf '%s ' $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

## make test: install what the tests need and run them all (SQLite and PostgreSQL, real Redis, Chromium, PHPUnit)
test: install system-packages
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider

## make demo: while `make run` is up, register demo shops and post signed webhooks to it
demo: install
	$(BIN)/flask --app app demo

## make staff EMAIL=you@example.com: create an admin log-in (asks for the password)
staff: install
	$(BIN)/flask --app app staff create --admin --email "$(EMAIL)"

## make plugin: build the WordPress plugin for WooCommerce stores into dist/stammkunde-woocommerce.zip
plugin: install
	$(BIN)/python connectors/woocommerce/wordpress-plugin/build.py dist/stammkunde-woocommerce.zip

bench: install
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.worker

clean:
	rm -rf $(VENV) instance
