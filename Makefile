# testbed — transport-layer mobility lab. Every target installs what it needs through `setup`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_STAMP := /var/lib/testbed/system.stamp
TOPOLOGY ?= two-ar
LAB ?= tb


.PHONY: setup kernel testbed-up testbed-down test unit integration lint bench clean

setup: $(SYSTEM_STAMP) $(STAMP) kernel

# the default kernel under test (a Debian 6.1 build with SCTP as a module) for VM nodes;
# idempotent: `scripts/fetch-kernel.sh` returns at once when the cache has it
kernel: $(SYSTEM_STAMP)
	bash scripts/fetch-kernel.sh >/dev/null

# Debian packages (BIND 9.20 from bookworm-backports, dhcpd, radvd, mininet, tcpdump, QEMU);
# re-run when the script changes
$(SYSTEM_STAMP): scripts/setup-system.sh
	bash scripts/setup-system.sh
	mkdir -p $(dir $@) && touch $@

# the Python environment: Debian's python3 (so the VM guests, which share the host root, run it too)
$(STAMP): pyproject.toml $(SYSTEM_STAMP)
	test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

testbed-up: setup
	$(VENV)/bin/testbed --lab $(LAB) up $(TOPOLOGY)
	$(VENV)/bin/testbed --lab $(LAB) status

testbed-down: setup
	$(VENV)/bin/testbed --lab $(LAB) down

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	$(VENV)/bin/pytest -q -ra

unit: setup
	$(VENV)/bin/pytest -q -m "not integration"

integration: setup
	$(VENV)/bin/pytest -q -m integration

bench: setup
	$(PY) bench/bench_lab.py

clean:
	-$(VENV)/bin/testbed clean
	rm -rf .pytest_cache .ruff_cache
