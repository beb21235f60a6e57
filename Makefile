# The two commands the README opens with. Both set up everything they need first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8765
SETUP_STAMP := $(VENV)/.corral-installed

.PHONY: serve test setup host venv image inspector lint bench

serve: setup
	$(VENV)/bin/corral serve --transport sse,http --host 127.0.0.1 --port $(PORT)

# Two tiers: the unit tier must pass with Docker unreachable (it uses the in-memory FakeEngine and
# local agents), then the Docker tier runs against the real engine + runsc through real MCP clients.
NO_DOCKER := unix:///nonexistent/corral-no-docker.sock

test: setup lint
	DOCKER_HOST=$(NO_DOCKER) $(PY) -m pytest -q -ra -m "not docker" $(PYTEST_ARGS)
	$(PY) -m pytest -q -ra -m docker $(PYTEST_ARGS)

setup: host venv image inspector

host:
	@bash scripts/setup-host.sh

venv: $(SETUP_STAMP)

$(SETUP_STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' 1>&2
	@touch $@

image: venv
	@$(VENV)/bin/corral image status >/dev/null 2>&1 || $(VENV)/bin/corral image build

INSPECTOR := build/inspector/node_modules/.bin/mcp-inspector

inspector: $(INSPECTOR)

# The MCP Inspector CLI: a third-party MCP client the tests drive the stdio server with.
$(INSPECTOR):
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null)
	@mkdir -p build/inspector
	@cd build/inspector && npm install --no-audit --no-fund --silent @modelcontextprotocol/inspector@2 1>&2

# corral/agent runs inside sandboxes on Python >= 3.8: ruff lints it for py38 (corral/agent/ruff.toml)
# and mypy checks it again for the oldest Python it still accepts (3.10).
lint: venv
	$(VENV)/bin/ruff check corral tests bench examples
	$(VENV)/bin/mypy corral tests
	$(VENV)/bin/mypy --python-version 3.10 corral/agent

bench: setup
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,bench]' 1>&2
	$(PY) -m bench.run
