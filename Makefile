# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := mariadb-server mariadb-client galera-4 mariadb-backup libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core

.PHONY: run test lint bench cluster system-packages clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian packages the tests need (we run as root); installed only when missing.
system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

run: $(STAMP)
	$(BIN)/billing db upgrade
	$(BIN)/billing demo

# The suite runs every database test on SQLite and on a private MariaDB server that the test
# session starts (data directory under build/) and stops; see tests/conftest.py.
test: $(STAMP) system-packages
	$(BIN)/ruff check billing_core billing_cli mcp_server webhook_app tests bench
	$(BIN)/mypy
	$(BIN)/pytest -p no:cacheprovider

# A 3-node MariaDB Galera cluster on loopback (data under build/cluster/): prints one DATABASE_URL per
# node, stops on Ctrl-C. See "Scaling out" in the README.
cluster: $(STAMP) system-packages
	$(BIN)/python -m tests.support.galera

bench: $(STAMP) system-packages
	@dpkg -s wrk >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)
	$(BIN)/python -m bench.charges
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.invoices
	$(BIN)/python -m bench.cluster

clean:
	rm -rf build var $(VENV)
